// Every chat template llama.cpp ships (models/templates in its source) renders here as Hugging Face renders it:
// each with three conversations, through the server's own template code (templateTask's variables, the template
// worker's render), compared with Python's Jinja2 in the environment of transformers' apply_chat_template
// (testing/render-with-jinja2.py, one process for all the renders). The same text, or an error on both sides:
// where Jinja2 raises, the server answers the template's error rather than a prompt Hugging Face never makes.
//
// The templates come from the llama.cpp source that node-llama-cpp ships (a devDependency here), not from
// @llm-node/engine-llama-cpp's build, which extracts them too: the server depends on no engine, and depending on
// that one would make the server's build wait for a native plugin's.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { type ChatPromptInput, templateTask } from './chat-template.js';
import { renderTemplate } from './template-worker.js';

/** What strftime_now gives both sides: a template that writes today's date renders the same on each. */
const NOW = '2026-03-05T14:30:00';

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', description: 'The city' } }, required: ['city'] },
  },
};

const conversations: Record<string, ChatPromptInput> = {
  'a chat with a system message': {
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Hello!' },
    ],
  },
  'a multi-turn chat': {
    messages: [
      { role: 'user', content: 'What is 2 + 2?' },
      { role: 'assistant', content: '4.' },
      { role: 'user', content: 'And 3 + 3?' },
    ],
  },
  // The call's arguments an object, as Hugging Face's chat templates take them (a JSON string, as OpenAI's API
  // sends them, makes most of these templates raise on both sides and so shows less), and its id nine letters
  // and digits, the only ids Mistral's templates accept.
  'a tool call and its result': {
    tools: [weatherTool],
    messages: [
      { role: 'user', content: 'What is the weather in Paris?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [{ id: 'call12345', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }],
      },
      { role: 'tool', tool_call_id: 'call12345', content: '{"temperature": 18}' },
    ],
  },
};

const jinja2Installed = spawnSync('python3', ['-c', 'import jinja2']).status === 0;
if (!jinja2Installed) {
  const missing = "Python's Jinja2 is not installed here (Debian, Ubuntu: apt-get install python3-jinja2)";
  if (process.env.CI) throw new Error(missing);
  console.warn(`${missing}: the comparison of chat templates with it is skipped`);
}

/** Each template's name and text, from a checkout of only models/templates, removed once read. */
async function llamaCppTemplates(): Promise<[string, string][]> {
  const nodeLlamaCpp = dirname(dirname(createRequire(import.meta.url).resolve('node-llama-cpp')));
  const checkout = await mkdtemp(join(tmpdir(), 'llama-cpp-templates-'));
  const git = (...args: string[]) => execFileSync('git', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    git('clone', '--quiet', '--no-checkout', join(nodeLlamaCpp, 'llama', 'gitRelease.bundle'), checkout);
    git('-C', checkout, 'checkout', '--quiet', 'HEAD', '--', 'models/templates');
    const folder = join(checkout, 'models', 'templates');
    const names = (await readdir(folder)).filter((name) => name.endsWith('.jinja')).sort();
    return await Promise.all(
      names.map(async (name): Promise<[string, string]> => [name.slice(0, -'.jinja'.length), await readFile(join(folder, name), 'utf8')]),
    );
  } finally {
    await rm(checkout, { recursive: true, force: true });
  }
}

const templates = await llamaCppTemplates();
if (templates.length === 0) throw new Error("node-llama-cpp's llama.cpp source has no models/templates/*.jinja");

const renders = templates.flatMap(([name, chatTemplate]) =>
  Object.entries(conversations).map(([conversation, input]) => ({
    name,
    conversation,
    ...templateTask({ chatTemplate, bosToken: '<|bos|>', eosToken: '<|eos|>' }, input),
  })),
);

type Jinja2Outcome = { text: string } | { error: string };

function renderWithJinja2(): Jinja2Outcome[] {
  const script = fileURLToPath(new URL('testing/render-with-jinja2.py', import.meta.url));
  const input = JSON.stringify({ now: NOW, renders: renders.map(({ source, variables }) => ({ source, variables })) });
  const python = spawnSync('python3', [script], { input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (python.status !== 0) throw new Error(`render-with-jinja2.py failed: ${python.stderr}`);
  return JSON.parse(python.stdout) as Jinja2Outcome[];
}

const references = jinja2Installed ? renderWithJinja2() : [];

beforeAll(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(new Date(NOW));
});

afterAll(() => {
  vi.useRealTimers();
});

describe.skipIf(!jinja2Installed)("llama.cpp's chat templates, rendered as Jinja2 renders them", () => {
  test.each(renders.map(({ name, conversation }, index) => [name, conversation, index] as const))(
    '%s with %s',
    (_name, _conversation, index) => {
      const { source, variables } = renders[index]!;
      const reference = references[index]!;
      const outcome = renderTemplate(source, variables);
      if ('error' in reference) {
        expect(outcome, `Jinja2 raised ${reference.error}`).toHaveProperty('failed');
      } else {
        expect(outcome).toEqual({ text: reference.text });
      }
    },
  );
});
