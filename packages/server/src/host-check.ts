import { isIP } from 'node:net';
import type { RequestHandler } from 'express';
import { apiError } from './errors.js';

/**
 * Refuses requests whose Host header names a host the operator did not allow: a web page on another site can
 * otherwise drive a node bound to loopback through DNS rebinding (its name resolving to 127.0.0.1). As dev
 * servers do, IP addresses (which cannot be rebound), `localhost` and `*.localhost` are always allowed, and
 * `allowed` adds names; an entry starting with a dot allows a domain and its subdomains. `'all'` turns the
 * check off. A request without a Host header (an HTTP/1.0 health probe, as load balancers send) is served:
 * browsers always send one.
 */
export function checkHost(allowed: readonly string[] | 'all'): RequestHandler {
  const names = allowed === 'all' ? [] : allowed.map((name) => name.toLowerCase());
  return (req, _res, next) => {
    if (allowed === 'all' || req.headers.host === undefined) return next();
    const host = hostname(req.headers.host);
    if (isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost') || names.some((name) => matches(host, name))) {
      return next();
    }
    next(
      apiError('host_not_allowed', `Host '${host}' is not allowed; to serve requests for it, start the node with --allowed-hosts ${host}`),
    );
  };
}

/** The host of a Host header, lower-cased, without its port or an IPv6 address's brackets. */
function hostname(header: string): string {
  const host = header.trim().toLowerCase();
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

function matches(host: string, name: string): boolean {
  return name.startsWith('.') ? host === name.slice(1) || host.endsWith(name) : host === name;
}
