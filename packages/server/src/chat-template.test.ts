import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ModelInfo } from '@llm-node/registry';
import { writeGgufModel } from '@llm-node/registry/testing';
import { type ChatPromptInput, createChatTemplates } from './chat-template.js';
import { startTestNode, writeSafetensorsModel, type TestNode } from './testing/test-node.js';

// Meta-Llama-3-8B-Instruct's chat template (tokenizer_config.json): BOS first, a header per message.
const LLAMA3_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + " +
  "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}" +
  "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const LLAMA3_TOKENS = ['<unk>', '<|begin_of_text|>', '<|eot_id|>'];

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode({
    async prepare({ modelsDir }) {
      // GGUF without tokenizer.ggml.add_bos_token: the template's BOS stays in the prompt.
      await writeGgufModel(join(modelsDir, 'llama3-gguf.gguf'), {
        architecture: 'echo',
        chatTemplate: LLAMA3_TEMPLATE,
        tokens: LLAMA3_TOKENS,
        bosTokenId: 1,
        eosTokenId: 2,
      });
      // Safetensors whose tokenizer adds BOS itself: the template's BOS is dropped, as llama.cpp's server does.
      await writeSafetensorsModel(
        join(modelsDir, 'llama3-st'),
        { model_type: 'echo' },
        { chat_template: LLAMA3_TEMPLATE, bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>', add_bos_token: true },
      );
      await writeGgufModel(join(modelsDir, 'dated.gguf'), {
        architecture: 'echo',
        chatTemplate:
          '{{ bos_token }}{{ strftime_now("%Y") }}{% for m in messages %}|{{ m.role }}:{{ m.content }}{% endfor %}' +
          '{% if tools is defined %}|tools:{{ tools | length }}{% endif %}{% if add_generation_prompt %}|{{ eos_token }}{% endif %}',
      });
      await writeGgufModel(join(modelsDir, 'strict.gguf'), {
        architecture: 'echo',
        chatTemplate: "{% if messages[0]['role'] != 'system' %}{{ raise_exception('A system message must come first') }}{% endif %}ok",
      });
      await writeGgufModel(join(modelsDir, 'content-keys.gguf'), {
        architecture: 'echo',
        chatTemplate: "{% for m in messages %}{{ m.role }}:{{ 'content' in m }};{% endfor %}",
      });
      await writeGgufModel(join(modelsDir, 'call-arguments.gguf'), {
        architecture: 'echo',
        chatTemplate:
          '{% for m in messages %}{% for c in m.tool_calls or [] %}{{ c.function.arguments | tojson }}|' +
          '{% if c.function.arguments is mapping %}{{ c.function.arguments.city }}{% endif %};{% endfor %}{% endfor %}',
      });
      await writeGgufModel(join(modelsDir, 'unbalanced.gguf'), {
        architecture: 'echo',
        chatTemplate: '{% for m in messages %}never closed',
      });
    },
  });
});

afterAll(async () => {
  await node.close();
});

const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: ' Hi ' },
];
const llama3Prompt =
  '<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>' +
  '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';

async function applyTemplate(body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await node.post('/apply-template', body);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('chat templates', () => {
  test("renders the model's own template from GGUF, keeping the BOS the tokenizer does not add", async () => {
    expect(await applyTemplate({ model: 'llama3-gguf', messages })).toEqual({
      status: 200,
      body: { prompt: `<|begin_of_text|>${llama3Prompt}` },
    });
  });

  test("renders tokenizer_config.json's template and drops the BOS the tokenizer adds itself", async () => {
    expect(await applyTemplate({ model: 'llama3-st', messages })).toEqual({ status: 200, body: { prompt: llama3Prompt } });
    // The engine is given exactly that prompt: the echo engine says it back.
    const completion = await node.client.chat.completions.create({ model: 'llama3-st', messages: messages as never });
    expect(completion.choices[0]!.message.content).toBe(llama3Prompt);
  });

  test('gives templates strftime_now, tools, bos_token and eos_token, as apply_chat_template does', async () => {
    const tools = [{ type: 'function', function: { name: 'now', parameters: {} } }];
    const { body } = await applyTemplate({ model: 'dated', messages: [{ role: 'user', content: 'Hi' }], tools });
    expect(body.prompt).toBe(`<s>${new Date().getFullYear()}|user:Hi|tools:1|</s>`);
    const none = await applyTemplate({ model: 'dated', messages: [{ role: 'user', content: 'Hi' }], tools: [] });
    expect(none.body.prompt).toBe(`<s>${new Date().getFullYear()}|user:Hi|</s>`);
  });

  test('a message without content reaches the template without one, as apply_chat_template gives it', async () => {
    const call = { id: 'call12345', type: 'function', function: { name: 'now', arguments: '{}' } };
    const { body } = await applyTemplate({
      model: 'content-keys',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', tool_calls: [call] },
        { role: 'tool', tool_call_id: 'call12345', content: '12:00' },
      ],
    });
    expect(body.prompt).toBe('user:True;assistant:False;tool:True;');
  });

  test("gives templates a tool call's JSON arguments as an object, as apply_chat_template takes them; other text as text", async () => {
    const call = (id: string, args: string) => ({ id, type: 'function', function: { name: 'weather', arguments: args } });
    const { body } = await applyTemplate({
      model: 'call-arguments',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', tool_calls: [call('call00001', '{"city": "Oslo"}'), call('call00002', 'not json'), call('call00003', '[1]')] },
      ],
    });
    expect(body.prompt).toBe('{"city": "Oslo"}|Oslo;"not json"|;"[1]"|;');
  });

  test('falls back to ChatML for a model without a template', async () => {
    const { body } = await applyTemplate({ model: 'echo', messages });
    expect(body.prompt).toBe('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n');
  });

  test("a template's raise_exception is a 400 with its message", async () => {
    const { status, body } = await applyTemplate({ model: 'strict', messages: [{ role: 'user', content: 'Hi' }] });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({ code: 'invalid_request_error' });
    expect((body.error as { message: string }).message).toContain('A system message must come first');
  });

  test('a template that does not compile is a 422 chat_template_error', async () => {
    const { status, body } = await applyTemplate({ model: 'unbalanced', messages });
    expect(status).toBe(422);
    expect(body.error).toMatchObject({ code: 'chat_template_error' });
  });
});

describe('the render pool', () => {
  // What a render reads of a model; null: ChatML.
  const modelWith = (chatTemplate: string | null) =>
    ({ chatTemplate, bosToken: null, eosToken: null, addBosToken: null }) as unknown as ModelInfo;
  const chat: ChatPromptInput = { messages: [{ role: 'user', content: 'Hi' }] };

  test('starts with one worker, starts the others with the first chat, and keeps them', async () => {
    const templates = createChatTemplates();
    try {
      const all = Math.min(4, availableParallelism());
      const model = modelWith(null);
      expect(templates.workers).toBe(1);
      await templates.render(model, chat);
      expect(templates.workers).toBe(all);
      // Overlapping renders keep every worker busy at once, so the ones begun above have booted and finished.
      await Promise.all(Array.from({ length: 2 * all }, () => templates.render(model, chat)));
      await sleep(200);
      expect(templates.workers).toBe(all);
    } finally {
      await templates.close();
    }
  });

  test('stops a render 2 s after it begins, and does not charge a render queued behind it for that time', async () => {
    const templates = createChatTemplates();
    try {
      const endless = modelWith('{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}');
      // Slow enough to be still rendering when its own 2 s are up, were they counted from when it was queued.
      const slow = modelWith('{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}done'); // about 0.3 s
      await templates.render(modelWith('warm'), chat); // every worker started
      const runaways = Array.from({ length: templates.workers }, () => templates.render(endless, chat));
      const queued = templates.render(slow, chat);
      // Awaited together: the runaways fail at about the same moment, and one awaited later would meet its
      // failure unhandled.
      await Promise.all([
        ...runaways.map((runaway) => expect(runaway).rejects.toThrow(/took longer than 2 s/)),
        expect(queued).resolves.toBe('done'),
      ]);
    } finally {
      await templates.close();
    }
  }, 30_000);
});
