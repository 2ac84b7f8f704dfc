// A worker of the chat template pool (chat-template.ts): renders one template with one set of variables. A
// template's own loop cannot hold the node up here; the pool ends a worker that takes too long or too much.
import { Template } from '@huggingface/jinja';

export interface RenderTask {
  source: string;
  variables: Record<string, unknown>;
  /**
   * Set to `process.hrtime.bigint()` when the render begins: its time limit runs from then, not from when it was
   * queued. Shared memory rather than a message, so that a render wakes the node's thread once, with its outcome.
   */
  startedAt: BigInt64Array;
}

/** What a render came to: the text, or which step failed and why (errors do not cross threads whole). */
export type RenderOutcome = { text: string } | { failed: 'compile' | 'render'; message: string };

const compiled = new Map<string, Template>();

export default function render({ source, variables, startedAt }: RenderTask): RenderOutcome {
  Atomics.store(startedAt, 0, process.hrtime.bigint());
  return renderTemplate(source, variables);
}

/** The render itself, in whichever thread calls it. */
export function renderTemplate(source: string, variables: Record<string, unknown>): RenderOutcome {
  let template = compiled.get(source);
  if (template === undefined) {
    try {
      template = new Template(source);
    } catch (error) {
      return { failed: 'compile', message: messageOf(error) };
    }
    compiled.set(source, template);
  }
  try {
    return { text: template.render(variables) };
  } catch (error) {
    return { failed: 'render', message: messageOf(error) };
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
