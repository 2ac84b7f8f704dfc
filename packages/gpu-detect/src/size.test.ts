import { describe, expect, it } from 'vitest';
import { formatSize, parseSize } from './size.js';

const GIB = 2 ** 30;

describe('parseSize', () => {
  it.each([
    ['8G', 8 * GIB],
    ['8g', 8 * GIB],
    ['8GB', 8 * GIB],
    ['8gb', 8 * GIB],
    ['8GiB', 8 * GIB],
    ['1.5GiB', 1.5 * GIB],
    ['512M', 512 * 2 ** 20],
    ['64K', 64 * 1024],
    ['2T', 2 * 2 ** 40],
    ['8 GB', 8 * GIB],
    [' 8G ', 8 * GIB],
    ['8589934592', 8589934592],
    [8589934592, 8589934592],
  ])('reads %j as %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it('reads --vram-limit 8G and LLM_NODE_VRAM_LIMIT=8589934592 as the same amount', () => {
    expect(parseSize('8G')).toBe(parseSize('8589934592'));
  });

  it.each([
    ['0', 'is zero'],
    ['0G', 'is zero'],
    ['-8G', 'is negative'],
    [-1, 'is negative'],
    ['1.5', 'is not a whole number of bytes'],
    ['1.1K', 'is not a whole number of bytes'],
    ['', 'is not a size'],
    ['8X', 'is not a size'],
    ['G', 'is not a size'],
    ['8 G B', 'is not a size'],
    ['0x10', 'is not a size'],
    ['1e9', 'is not a size'],
    ['eight gigabytes', 'is not a size'],
    [Number.NaN, 'is not a size'],
    ['99999999T', 'is too large'],
  ])('refuses %j because it %s, quoting the input and the valid forms', (input, problem) => {
    expect(() => parseSize(input)).toThrow(RangeError);
    expect(() => parseSize(input)).toThrow(`Invalid size ${JSON.stringify(String(input))}: it ${problem}`);
    expect(() => parseSize(input)).toThrow(/such as 8G, 512M, 8GB or 1\.5GiB/);
  });
});

describe('formatSize', () => {
  it.each([
    [16 * GIB, '16GB'],
    [8 * GIB, '8GB'],
    [1.5 * GIB, '1.5GB'],
    [512 * 2 ** 20, '512MB'],
    [81559 * 2 ** 20, '79.6GB'],
    [2 * 2 ** 40, '2TB'],
    [1536, '1.5KB'],
    [500, '500B'],
    [0, '0B'],
    [GIB - 1, '1GB'],
    [-2 * GIB, '-2GB'],
  ])('writes %d bytes as %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('writes the figures of the Insufficient VRAM message', () => {
    expect(`Insufficient VRAM: required ${formatSize(parseSize('16G'))}, available ${formatSize(parseSize('8G'))}`).toBe(
      'Insufficient VRAM: required 16GB, available 8GB',
    );
  });
});
