import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { apiError } from './errors.js';

/**
 * The most connections the server keeps open, from this process's open-file limit where it can be read
 * (Linux): half of it, the rest left to models, engine hosts and the log; 1,024 elsewhere.
 */
export function defaultMaxConnections(): number {
  try {
    const limit = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    if (limit !== undefined) return Math.max(64, Math.floor(Number(limit) / 2));
  } catch {
    // not Linux
  }
  return 1024;
}

/** Connections that have not sent a whole request's headers within this are closed. */
const HEADERS_TIMEOUT_MS = 10_000;

/**
 * Keeps a crowd of connections from locking everyone out. At most `maxConnections` stay open: one more
 * arriving closes the connection idle the longest (none in flight on it; one that never sent a request counts),
 * or, when every one is busy, the new one; so /health and new clients still get in under a flood of idle
 * sockets. Connections that send no complete request headers within 10 s are closed, and what the HTTP parser
 * refuses (headers too large, a malformed request) is answered in the API's error envelope.
 */
export function guardConnections(server: Server, maxConnections: number): void {
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = 0; // a long generation may be in flight for minutes
  const idleSince = new Map<Socket, number>(); // open connections with no request in flight
  const busy = new Map<Socket, number>(); // open connections and their requests in flight

  server.on('connection', (socket: Socket) => {
    if (idleSince.size + busy.size >= maxConnections) {
      const oldest = [...idleSince].sort((a, b) => a[1] - b[1])[0]?.[0];
      (oldest ?? socket).destroy();
      if (oldest === undefined) return;
    }
    idleSince.set(socket, Date.now());
    socket.once('close', () => {
      idleSince.delete(socket);
      busy.delete(socket);
    });
  });
  server.on('request', (req, res) => {
    const socket = req.socket;
    if (socket.destroyed) return;
    idleSince.delete(socket);
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const left = (busy.get(socket) ?? 1) - 1;
      if (left > 0) return busy.set(socket, left);
      busy.delete(socket);
      if (!socket.destroyed) idleSince.set(socket, Date.now());
    });
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const refusal =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? apiError('headers_too_large', 'The request headers are larger than the server accepts')
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? null
          : apiError('invalid_request_error', `The request is not valid HTTP: ${error.message}`);
    if (refusal === null) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(refusal.toJSON());
    socket.end(
      `HTTP/1.1 ${refusal.status} ${refusal.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
