import { Writable } from 'node:stream';

/**
 * A terminal shared by log lines and one status line below them (a load's progress bar): a log line clears the
 * status line, is written, and the status line is drawn again under it.
 */
export class StatusLine {
  /** Where the logger writes its lines. */
  readonly logDestination: Writable;
  readonly #out: NodeJS.WriteStream;
  #text = '';

  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
    this.logDestination = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        out.write(this.#text ? `\r\x1b[K${chunk}${this.#text}` : chunk, done);
      },
    });
  }

  show(text: string): void {
    this.#text = text;
    this.#out.write(`\r\x1b[K${text}`);
  }

  clear(): void {
    if (this.#text) this.#out.write('\r\x1b[K');
    this.#text = '';
  }
}
