// Token ids and text by plain lookup in a model folder's tokenizer.json, independent of the plugin's tokenizer:
// the prompts of the reference comparisons are built from pieces that are each one token, and the reference's
// tokens are turned back into the text the node should stream.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

interface TokenizerJson {
  added_tokens: { id: number; content: string; special: boolean }[];
  model: { vocab: Record<string, number> };
}

// GPT-2's byte-level alphabet: printable ASCII and Latin-1 bytes stand for themselves, the others for U+0100 on.
function byteAlphabet(): string[] {
  const table: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    table.push(String.fromCodePoint(printable ? b : next++));
  }
  return table;
}

export interface TokenText {
  /** The id of a piece that is one token: an added token's text, or text whose bytes are one vocabulary entry. */
  idOf(piece: string): number;
  /** The bytes of a token (empty for special tokens). */
  bytesOf(id: number): Buffer;
}

export async function readTokenText(modelDir: string): Promise<TokenText> {
  const json = JSON.parse(await readFile(join(modelDir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
  const alphabet = byteAlphabet();
  const byteOf = new Map(alphabet.map((char, b) => [char, b]));
  const textOf = new Map(Object.entries(json.model.vocab).map(([text, id]) => [id, text]));
  const added = new Map(json.added_tokens.map((token) => [token.content, token]));
  return {
    idOf(piece) {
      const token = added.get(piece)?.id ?? json.model.vocab[[...Buffer.from(piece)].map((b) => alphabet[b]).join('')];
      if (token === undefined) throw new Error(`${JSON.stringify(piece)} is not one token`);
      return token;
    },
    bytesOf(id) {
      const text = textOf.get(id);
      return text === undefined ? Buffer.alloc(0) : Buffer.from([...text].map((char) => byteOf.get(char)!));
    },
  };
}

/** The prompt of one user message under the maker's chat template (Llama 3 Instruct's), as single-token pieces. */
export function llama3ChatPieces(userPieces: string[]): string[] {
  return [
    '<|begin_of_text|>',
    ...['<|start_header_id|>', 'user', '<|end_header_id|>', '\n\n', ...userPieces, '<|eot_id|>'],
    ...['<|start_header_id|>', 'assistant', '<|end_header_id|>', '\n\n'],
  ];
}
