import { Template } from '@huggingface/jinja';
import type { ModelInfo } from '@llm-node/registry';
import { apiError } from './errors.js';
import type { ChatMessage } from './schemas.js';

/** ChatML: what a model that ships no chat template gets (the README says so). */
const FALLBACK_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface ChatPromptInput {
  messages: readonly ChatMessage[];
  tools?: readonly Record<string, unknown>[] | null;
}

export type ChatTemplates = (model: ModelInfo, input: ChatPromptInput) => string;

/**
 * Renders chats with each model's own template, compiled once per distinct template text. The variables
 * are those of Hugging Face's apply_chat_template (raise_exception and strftime_now come with the Jinja
 * runtime). Like llama.cpp's server, a BOS the template writes is dropped when the tokenizer adds one
 * itself, so that the prompt, tokenized with special tokens added, starts with exactly one.
 */
export function createChatTemplates(): ChatTemplates {
  const compiled = new Map<string, Template>();

  function compile(source: string): Template {
    let template = compiled.get(source);
    if (template === undefined) {
      try {
        template = new Template(source);
      } catch (error) {
        throw apiError('chat_template_error', `The model's chat template does not compile: ${messageOf(error)}`);
      }
      compiled.set(source, template);
    }
    return template;
  }

  return (model, { messages, tools }) => {
    const template = compile(model.chatTemplate ?? FALLBACK_CHAT_TEMPLATE);
    let prompt: string;
    try {
      prompt = template.render({
        messages: messages.map(templateMessage),
        add_generation_prompt: true,
        bos_token: model.bosToken ?? '',
        eos_token: model.eosToken ?? '',
        // Templates test `tools is not none`: an empty list means no tools, as if none were given.
        ...(tools && tools.length > 0 ? { tools } : {}),
      });
    } catch (error) {
      throw apiError('invalid_request_error', `The model's chat template refused these messages: ${messageOf(error)}`);
    }
    if (model.addBosToken === true && model.bosToken && prompt.startsWith(model.bosToken)) return prompt.slice(model.bosToken.length);
    return prompt;
  };
}

/** Text parts joined with newlines, as llama.cpp does for templates that expect plain string content. */
function templateMessage(message: ChatMessage): Record<string, unknown> {
  const { content, ...rest } = message;
  return { ...rest, content: Array.isArray(content) ? content.map((part) => part.text).join('\n') : content };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
