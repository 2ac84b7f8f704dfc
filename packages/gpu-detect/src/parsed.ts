/** What a pure parser of a tool's output returns: the value, or why the output is unusable. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
