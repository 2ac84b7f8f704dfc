import { describe, expect, it } from 'vitest';
import { parseManifest } from './parse.js';

// The bad-input corpus: every case is a manifest.json a plugin author (or a broken disk) could produce, and the
// exact line the node reports for it. None may throw.
const FILE = 'engines/x/cpu/manifest.json';
// A valid manifest, the one in this package's README, that json() and without() build cases from.
const VALID = {
  id: 'llama_cpp',
  version: '1.0.0',
  abi_version: '1',
  gpu_backend: 'metal',
  architectures: ['llama', 'mistral', 'gemma', 'phi'],
  formats: ['gguf'],
  binary: 'libllama_engine.dylib',
};
const json = (changes: Record<string, unknown>) => JSON.stringify({ ...VALID, ...changes });
const without = (field: keyof typeof VALID) => JSON.stringify({ ...VALID, [field]: undefined });
const utf8 = (text: string) => new TextEncoder().encode(text);

const cases: Array<[name: string, content: string | Uint8Array, error: string]> = [
  // The file as a whole
  ['an empty file', '', 'is empty; it must be a JSON object such as {"id": "my_engine", …}'],
  ['a file of blank lines', '\n  \r\n\t', 'is empty; it must be a JSON object such as {"id": "my_engine", …}'],
  ['a file over 1 MiB', `{"license": "${'x'.repeat(1024 * 1024)}"}`, 'is 1048591 bytes; a manifest may be at most 1048576 bytes (1 MiB)'],
  ['UTF-16 text', new Uint8Array([0xff, 0xfe, ...Buffer.from('{"id":"x"}', 'utf16le')]), 'is UTF-16 text; save it as UTF-8'],
  ['bytes that are not UTF-8', new Uint8Array([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), 'is not valid UTF-8 text'],
  // JSON syntax, located by line and column
  ['a trailing comma', '{\n  "id": "x",\n}', 'is not valid JSON: expected a "quoted" field name (a trailing comma?) at line 3, column 1'],
  ['a missing comma', '{\n  "id": "x"\n  "version": "1.0.0"\n}', 'is not valid JSON: expected "," between items at line 3, column 3'],
  ['single quotes', "{'id': 'x'}", 'is not valid JSON: unexpected character at line 1, column 2'],
  ['a comment', '{\n  // the engine\n  "id": "x"\n}', 'is not valid JSON: comments are not allowed in JSON at line 2, column 3'],
  ['an unterminated string', '{"id": "x}', 'is not valid JSON: unterminated string at line 1, column 8'],
  ['a truncated object', '{"id": "x"', 'is not valid JSON: expected "}" at line 1, column 11'],
  ['content after the object', '{"id": "x"} {}', 'is not valid JSON: unexpected content after the end of the object at line 1, column 13'],
  [
    'a raw control character in a string',
    '{"id": "a\u0000b"}',
    'is not valid JSON: control character in a string (escape it) at line 1, column 8',
  ],
  // Not an object
  ['a list', JSON.stringify([VALID]), 'must be a JSON object of manifest fields such as {"id": "my_engine", …} (got the list [{…}])'],
  ['null', 'null', 'must be a JSON object of manifest fields such as {"id": "my_engine", …} (got null)'],
  ['a string', '"manifest"', 'must be a JSON object of manifest fields such as {"id": "my_engine", …} (got "manifest")'],
  ['a number', '42', 'must be a JSON object of manifest fields such as {"id": "my_engine", …} (got the number 42)'],
  // Fields
  [
    'no id',
    without('id'),
    '"id" is missing; it must be a name of letters, digits, "_", "-" and "." that starts with a letter, digit or "_", at most 64 long, such as "llama_cpp"',
  ],
  [
    'an id that is a path',
    json({ id: '../evil' }),
    '"id" must be a name of letters, digits, "_", "-" and "." that starts with a letter, digit or "_", at most 64 long, such as "llama_cpp" (got "../evil")',
  ],
  [
    'an id with a space',
    json({ id: 'my engine' }),
    '"id" must be a name of letters, digits, "_", "-" and "." that starts with a letter, digit or "_", at most 64 long, such as "llama_cpp" (got "my engine")',
  ],
  [
    'an empty id',
    json({ id: '' }),
    '"id" must be a name of letters, digits, "_", "-" and "." that starts with a letter, digit or "_", at most 64 long, such as "llama_cpp" (got an empty string)',
  ],
  [
    'an id of 65 characters',
    json({ id: 'a'.repeat(65) }),
    `"id" must be a name of letters, digits, "_", "-" and "." that starts with a letter, digit or "_", at most 64 long, such as "llama_cpp" (got "${'a'.repeat(60)}…")`,
  ],
  ['a version that is not semver', json({ version: '1.0' }), '"version" must be a semantic version such as "1.0.0" (got "1.0")'],
  ['a version that is a number', json({ version: 1 }), '"version" must be a semantic version such as "1.0.0" (got the number 1)'],
  ['an abi_version that is a number', json({ abi_version: 1 }), '"abi_version" must be a string of digits such as "1" (got the number 1)'],
  ['an abi_version with a prefix', json({ abi_version: 'v1' }), '"abi_version" must be a string of digits such as "1" (got "v1")'],
  [
    'an unknown gpu_backend',
    json({ gpu_backend: 'vulkan' }),
    '"gpu_backend" must be one of "cuda", "metal", "directml" or "cpu" (got "vulkan")',
  ],
  [
    'a gpu_backend in capitals',
    json({ gpu_backend: 'Metal' }),
    '"gpu_backend" must be one of "cuda", "metal", "directml" or "cpu" (got "Metal")',
  ],
  [
    'no architectures',
    json({ architectures: [] }),
    '"architectures" must be a non-empty list of unique, non-empty architecture names such as ["llama", "mistral"] (got an empty list)',
  ],
  [
    'architectures as a string',
    json({ architectures: 'llama' }),
    '"architectures" must be a non-empty list of unique, non-empty architecture names such as ["llama", "mistral"] (got "llama")',
  ],
  [
    'an empty architecture name',
    json({ architectures: ['llama', ''] }),
    '"architectures" must be a non-empty list of unique, non-empty architecture names such as ["llama", "mistral"] (got an empty string at [1])',
  ],
  [
    'an architecture twice',
    json({ architectures: ['llama', 'phi', 'llama'] }),
    '"architectures" must be a non-empty list of unique, non-empty architecture names such as ["llama", "mistral"] (got "llama" twice, at [0] and [2])',
  ],
  [
    'an unknown format',
    json({ formats: ['gguf', 'ggml'] }),
    '"formats" must be a non-empty list of unique formats among "gguf", "safetensors" and "onnx" (got "ggml" at [1])',
  ],
  [
    'no formats',
    json({ formats: [] }),
    '"formats" must be a non-empty list of unique formats among "gguf", "safetensors" and "onnx" (got an empty list)',
  ],
  [
    'a binary in the parent folder',
    json({ binary: '../libx.so' }),
    '"binary" must be a file name in the same folder such as "libllama_engine.dylib" (no "/", "\\" or ":", not "." or "..") (got "../libx.so")',
  ],
  [
    'an absolute binary path',
    json({ binary: '/usr/lib/libx.so' }),
    '"binary" must be a file name in the same folder such as "libllama_engine.dylib" (no "/", "\\" or ":", not "." or "..") (got "/usr/lib/libx.so")',
  ],
  [
    'a Windows binary path',
    json({ binary: 'bin\\x.dll' }),
    '"binary" must be a file name in the same folder such as "libllama_engine.dylib" (no "/", "\\" or ":", not "." or "..") (got "bin\\\\x.dll")',
  ],
  [
    'a drive-relative binary',
    json({ binary: 'C:x.dll' }),
    '"binary" must be a file name in the same folder such as "libllama_engine.dylib" (no "/", "\\" or ":", not "." or "..") (got "C:x.dll")',
  ],
  [
    'a binary that is ".."',
    json({ binary: '..' }),
    '"binary" must be a file name in the same folder such as "libllama_engine.dylib" (no "/", "\\" or ":", not "." or "..") (got "..")',
  ],
  [
    'an unknown modality',
    json({ modalities: ['chat'] }),
    '"modalities" must be a non-empty list of unique modalities among "completion" and "embedding" (got "chat" at [0])',
  ],
  ['supports_vision as a string', json({ supports_vision: 'yes' }), '"supports_vision" must be true or false (got "yes")'],
  ['a license that is a number', json({ license: 3 }), '"license" must be a non-empty string such as "MIT" (got the number 3)'],
  [
    'a $schema that is an object',
    json({ $schema: {} }),
    '"$schema" must be a string (the path or URL of manifest.schema.json) (got an object)',
  ],
  // Hostile shapes: deep nesting and huge lists end in a plain error, not a crash or a hang
  ['nesting a hundred thousand levels deep', '['.repeat(100_000), 'is not valid JSON: Unexpected end of JSON input'],
  [
    'a deeply nested field value',
    json({ architectures: 'DEEP' }).replace('"DEEP"', '['.repeat(400_000) + ']'.repeat(400_000)),
    '"architectures" must be a non-empty list of unique, non-empty architecture names such as ["llama", "mistral"] (got the list [[…]] at [0])',
  ],
  [
    'formats of two hundred thousand numbers',
    json({ formats: Array(200_000).fill(0) }),
    '"formats" must be a non-empty list of unique formats among "gguf", "safetensors" and "onnx" (got the number 0 at [0])',
  ],
];

describe('the bad-input corpus', () => {
  it('holds at least 25 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });

  it.each(cases)('refuses %s with its own reason', (_name, content, error) => {
    const result = parseManifest(typeof content === 'string' ? utf8(content) : content, FILE);
    expect(result).toMatchObject({ ok: false, errors: [`${FILE}: ${error}`] });
  });
});
