// A node under test in a process of its own (bench/server/serve.mjs), and the streaming client the benchmarks
// count tokens with: one token per SSE event that carries content, as ../shared/bench/oai_load.py counts them.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const serve = fileURLToPath(new URL('../server/serve.mjs', import.meta.url));

/** Starts serve.mjs over `enginesDir` and `modelsDir`; its engines in host processes unless `inProcess`. */
export async function startNode(enginesDir, modelsDir, { inProcess = false } = {}) {
  const child = spawn(process.execPath, [serve, enginesDir, modelsDir, ...(inProcess ? ['--in-process'] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = await once(createInterface({ input: child.stdout }), 'line');
  const { port } = JSON.parse(line);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  return {
    port,
    pid: child.pid,
    agent,
    request: (method, path, body) => request(port, agent, method, path, body),
    streamChat: (model, content, maxTokens) => streamChat(port, agent, model, content, maxTokens),
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
      agent.destroy();
    },
  };
}

function request(port, agent, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: { 'Content-Type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (part) => (text += part));
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${path}: ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** One streamed chat; resolves with the receipt time of every SSE event that carries content. */
function streamChat(port, agent, model, content, maxTokens) {
  const body = { model, messages: [{ role: 'user', content }], stream: true, max_tokens: maxTokens, ignore_eos: true };
  return new Promise((resolve, reject) => {
    const times = [];
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent, headers: { 'Content-Type': 'application/json' } },
      (res) => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (text) => {
          const now = performance.now();
          buffer += text;
          for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (event === 'data: [DONE]') continue;
            if (JSON.parse(event.slice('data: '.length)).choices[0]?.delta?.content) times.push(now);
          }
        });
        res.on('end', () => resolve(times));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Linux: the process ids of `pid` and its children (the engine hosts of a node). */
export function processTree(pid) {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children.flatMap(processTree)];
}

/** Linux: CPU seconds (user + system) the processes have used so far. */
export function cpuSeconds(pids) {
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const pid of pids) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    total += (Number(fields[11]) + Number(fields[12])) / tick; // utime, stime
  }
  return total;
}

/** Linux: a process's resident memory in MiB. */
export function rssMiB(pid) {
  const kib = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  return kib / 1024;
}
