import { readFile, stat } from 'node:fs/promises';
import { parse as locateJsonErrors, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { describe } from './describe.js';
import { fieldErrors, KNOWN_FIELDS } from './schema.js';
import type { EngineManifest, ManifestResult } from './types.js';

/** A manifest is a few hundred bytes; anything past 1 MiB is not one, and is not read into memory. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
const UNKNOWN_FIELDS_SHOWN = 10;

/** Reads and validates a manifest.json; never throws. */
export async function readManifest(file: string): Promise<ManifestResult> {
  let size: number;
  try {
    const stats = await stat(file);
    if (stats.isDirectory()) return failure(`${file}: is a directory, not a manifest file`);
    // A FIFO or device would block or never end; only regular files are read.
    if (!stats.isFile()) return failure(`${file}: is not a regular file`);
    size = stats.size;
  } catch (error) {
    return failure(`${file}: ${unreadable(error)}`);
  }
  if (size > MAX_MANIFEST_BYTES) return failure(tooLarge(file, size));
  try {
    return parseManifest(await readFile(file), file);
  } catch (error) {
    return failure(`${file}: ${unreadable(error)}`);
  }
}

/** Validates manifest.json content; `file` only names it in messages. Never throws. */
export function parseManifest(content: string | Uint8Array, file: string): ManifestResult {
  const size = typeof content === 'string' ? Buffer.byteLength(content, 'utf8') : content.byteLength;
  if (size > MAX_MANIFEST_BYTES) return failure(tooLarge(file, size));
  const decoded = decode(content);
  if (!decoded.ok) return failure(`${file}: ${decoded.error}`);

  const warnings: string[] = [];
  let text = decoded.text;
  // Editors on Windows still write UTF-8 with a byte order mark; JSON (RFC 8259) lets a parser ignore it.
  if (text.startsWith('\uFEFF')) {
    text = text.slice(1);
    warnings.push(`${file}: starts with a UTF-8 byte order mark (BOM), which was ignored; save it as UTF-8 without BOM`);
  }
  if (text.trim() === '') return failure(`${file}: is empty; it must be a JSON object such as {"id": "my_engine", …}`, warnings);

  const json = parseJson(text);
  if (!json.ok) return failure(`${file}: is not valid JSON: ${json.error}`, warnings);
  const value = json.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return failure(`${file}: must be a JSON object of manifest fields such as {"id": "my_engine", …} (got ${describe(value)})`, warnings);
  }
  const manifest = value as Record<string, unknown>;

  const unknown = Object.keys(manifest).filter((field) => !KNOWN_FIELDS.has(field));
  if (unknown.length > 0) warnings.push(`${file}: ${unknownFields(unknown)}`);
  const errors = fieldErrors(manifest).map((error) => `${file}: ${error}`);
  if (errors.length > 0) return { ok: false, errors, warnings };
  return { ok: true, manifest: known(manifest), warnings };
}

type Decoded = { ok: true; text: string } | { ok: false; error: string };

function decode(content: string | Uint8Array): Decoded {
  if (typeof content === 'string') return { ok: true, text: content };
  if ((content[0] === 0xff && content[1] === 0xfe) || (content[0] === 0xfe && content[1] === 0xff)) {
    return { ok: false, error: 'is UTF-16 text; save it as UTF-8' };
  }
  try {
    // ignoreBOM keeps a BOM in the text so that strings and bytes are handled (and warned about) alike.
    return { ok: true, text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(content) };
  } catch {
    return { ok: false, error: 'is not valid UTF-8 text' };
  }
}

type Json = { ok: true; value: unknown } | { ok: false; error: string };

// JSON.parse decides what is valid; jsonc-parser (strict settings) only says where the first problem is,
// because V8's messages do not always give a position.
function parseJson(text: string): Json {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: locate(text) ?? (error instanceof Error ? error.message : String(error)) };
  }
}

function locate(text: string): string | undefined {
  const errors: ParseError[] = [];
  try {
    locateJsonErrors(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  } catch {
    return undefined; // its recursive descent can overflow the stack on absurdly deep nesting
  }
  const [first] = errors;
  if (first === undefined) return undefined;
  const before = text.slice(0, first.offset);
  const line = before.split('\n').length;
  const column = first.offset - before.lastIndexOf('\n');
  return `${SYNTAX_ERRORS[printParseErrorCode(first.error)] ?? printParseErrorCode(first.error)} at line ${line}, column ${column}`;
}

const SYNTAX_ERRORS: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'malformed number',
  PropertyNameExpected: 'expected a "quoted" field name (a trailing comma?)',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected ":"',
  CommaExpected: 'expected "," between items',
  CloseBraceExpected: 'expected "}"',
  CloseBracketExpected: 'expected "]"',
  EndOfFileExpected: 'unexpected content after the end of the object',
  InvalidCommentToken: 'comments are not allowed in JSON',
  UnexpectedEndOfComment: 'comments are not allowed in JSON',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'malformed number',
  InvalidUnicode: 'invalid \\u escape',
  InvalidEscapeCharacter: 'invalid escape in a string',
  InvalidCharacter: 'control character in a string (escape it)',
};

function unknownFields(fields: string[]): string {
  const shown = fields
    .slice(0, UNKNOWN_FIELDS_SHOWN)
    .map((field) => describe(field))
    .join(', ');
  const more = fields.length > UNKNOWN_FIELDS_SHOWN ? ` and ${fields.length - UNKNOWN_FIELDS_SHOWN} more` : '';
  return `unknown field${fields.length > 1 ? 's' : ''} ${shown}${more} ignored (known fields: ${[...KNOWN_FIELDS].join(', ')})`;
}

function known(manifest: Record<string, unknown>): EngineManifest {
  const valid = manifest as unknown as EngineManifest;
  return {
    id: valid.id,
    version: valid.version,
    abi_version: valid.abi_version,
    gpu_backend: valid.gpu_backend,
    architectures: valid.architectures,
    formats: valid.formats,
    binary: valid.binary,
    ...(valid.modalities !== undefined && { modalities: valid.modalities }),
    ...(valid.supports_vision !== undefined && { supports_vision: valid.supports_vision }),
    ...(valid.license !== undefined && { license: valid.license }),
  };
}

function tooLarge(file: string, size: number): string {
  return `${file}: is ${size} bytes; a manifest may be at most ${MAX_MANIFEST_BYTES} bytes (1 MiB)`;
}

function unreadable(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'not found';
  if (code === 'EACCES' || code === 'EPERM') return 'cannot be read (permission denied)';
  if (code === 'EISDIR') return 'is a directory, not a manifest file';
  return `cannot be read (${error instanceof Error ? error.message : String(error)})`;
}

function failure(error: string, warnings: string[] = []): ManifestResult {
  return { ok: false, errors: [error], warnings };
}
