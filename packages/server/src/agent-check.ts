import { createServer, type AddressInfo, type Server } from 'node:net';

export interface AgentCheck {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * HAProxy's agent check (`agent-check agent-port <port>`): on each connection the node writes one line and
 * closes it. `reply` gives the line: `ready up 75%` (take traffic, at this weight), `drain` (no new traffic) or
 * `down`.
 */
export async function startAgentCheck(port: number, host: string, reply: () => Promise<string>): Promise<AgentCheck> {
  const server: Server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    reply().then(
      (line) => socket.end(`${line}\n`),
      () => socket.end('ready\n'), // the node is up even when it cannot weigh itself
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
