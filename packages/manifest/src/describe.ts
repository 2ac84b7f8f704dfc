const LONGEST_STRING = 60;
const LIST_PREVIEW = 5;

/** A JSON value as an error message shows what it got: `the number 1`, `"1.0"`, `the list ["gguf", 3]`. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return value === '' ? 'an empty string' : quote(value);
  if (typeof value === 'number') return `the number ${value}`;
  if (typeof value === 'boolean') return `the boolean ${value}`;
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    if (value.length === 0) return 'an empty list';
    const shown = value.slice(0, LIST_PREVIEW).map(brief).join(', ');
    return `the list [${shown}${value.length > LIST_PREVIEW ? `, … ${value.length - LIST_PREVIEW} more` : ''}]`;
  }
  return 'an object';
}

// Items of a list are shown one level deep, so a deeply nested value cannot make the message (or the stack) huge.
function brief(value: unknown): string {
  if (typeof value === 'string') return quote(value);
  if (Array.isArray(value)) return '[…]';
  if (typeof value === 'object' && value !== null) return '{…}';
  return String(value);
}

function quote(text: string): string {
  return JSON.stringify(text.length > LONGEST_STRING ? `${text.slice(0, LONGEST_STRING)}…` : text);
}
