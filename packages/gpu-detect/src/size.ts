// Sizes are binary whether written G, GB or GiB: `--vram-limit 8G` and `LLM_NODE_VRAM_LIMIT=8589934592 # 8GB`
// name the same amount, and the node's error messages print binary amounts as "16GB".
const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'] as const;
const MULTIPLIERS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?)?$/i;
const VALID_FORMS = 'a whole number of bytes such as 8589934592, or a number with a unit K, M, G or T such as 8G, 512M, 8GB or 1.5GiB';

/** Parses `8G`, `512M`, `8GB`, `1.5GiB`, `2T`, `64K` or plain bytes; throws a RangeError that quotes bad input. */
export function parseSize(input: string | number): number {
  const text = String(input).trim();
  const match = SIZE.exec(text);
  if (!match) throw invalid(input, text.startsWith('-') ? 'is negative' : 'is not a size');
  const bytes = Number(match[1]) * (MULTIPLIERS[(match[2] ?? '').toLowerCase()] ?? 1);
  if (bytes === 0) throw invalid(input, 'is zero');
  if (!Number.isInteger(bytes)) throw invalid(input, 'is not a whole number of bytes');
  if (!Number.isSafeInteger(bytes)) throw invalid(input, 'is too large');
  return bytes;
}

/** Writes a byte count the way the node's error messages do: `16GB`, `1.5GB`, `512MB` (binary units, one decimal at most). */
export function formatSize(bytes: number): string {
  let unit = 0;
  let value = Math.abs(bytes);
  // Rounding can carry into the next unit (1023.96MB reads 1024MB), so step up on the rounded figure.
  while (unit < UNITS.length - 1 && Math.round(value * 10) / 10 >= 1024) {
    value /= 1024;
    unit += 1;
  }
  const rounded = Math.round(value * 10) / 10;
  return `${bytes < 0 ? '-' : ''}${rounded}${UNITS[unit]}`;
}

function invalid(input: string | number, problem: string): RangeError {
  return new RangeError(`Invalid size ${JSON.stringify(String(input))}: it ${problem}; expected ${VALID_FORMS}`);
}
