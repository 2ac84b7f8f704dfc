import { Counter, Gauge, Histogram, Registry as PrometheusRegistry, collectDefaultMetrics } from 'prom-client';
import type { ModelActivity, Registry } from '@llm-node/registry';

export interface GenerationFigures {
  model: string;
  promptTokens: number;
  completionTokens: number;
  /** Null when no token came. */
  timeToFirstTokenSeconds: number | null;
  /** Decode rate after the first token; null with fewer than two tokens. */
  tokensPerSecond: number | null;
}

/**
 * The Prometheus metrics of one server, in their own prom-client registry (two servers in one process do
 * not collide). Request and generation figures are counted as they happen, once per request; VRAM,
 * engines and models are read from the node's registry when scraped.
 */
export class Metrics {
  readonly #prometheus = new PrometheusRegistry();
  readonly #requests: Counter<'method' | 'route' | 'status'>;
  readonly #promptTokens: Counter<'model'>;
  readonly #generatedTokens: Counter<'model'>;
  readonly #timeToFirstToken: Histogram<'model'>;
  readonly #tokensPerSecond: Histogram<'model'>;
  readonly activeGenerations: Gauge;

  /** The Prometheus text exposition format, and its content type. */
  get contentType(): string {
    return this.#prometheus.contentType;
  }

  exposition(): Promise<string> {
    return this.#prometheus.metrics();
  }

  constructor(nodeRegistry: Registry) {
    const registers = [this.#prometheus];
    collectDefaultMetrics({ register: this.#prometheus, prefix: 'llm_node_' });
    this.#requests = new Counter({
      name: 'llm_node_http_requests_total',
      help: 'HTTP requests answered, by route and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.#promptTokens = new Counter({
      name: 'llm_node_prompt_tokens_total',
      help: 'Prompt tokens processed',
      labelNames: ['model'],
      registers,
    });
    this.#generatedTokens = new Counter({
      name: 'llm_node_generated_tokens_total',
      help: 'Tokens generated',
      labelNames: ['model'],
      registers,
    });
    this.#timeToFirstToken = new Histogram({
      name: 'llm_node_time_to_first_token_seconds',
      help: 'From the request reaching the engine to its first token',
      labelNames: ['model'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#tokensPerSecond = new Histogram({
      name: 'llm_node_decode_tokens_per_second',
      help: 'Decode rate of each generation after its first token',
      labelNames: ['model'],
      buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
      registers,
    });
    this.activeGenerations = new Gauge({ name: 'llm_node_active_generations', help: 'Generations in progress', registers });
    registerNodeGauges(registers, nodeRegistry);
    registerModelServerGauges(registers, nodeRegistry);
  }

  countRequest(method: string, route: string, status: number): void {
    this.#requests.inc({ method, route, status });
  }

  recordGeneration(figures: GenerationFigures): void {
    const labels = { model: figures.model };
    this.#promptTokens.inc(labels, figures.promptTokens);
    this.#generatedTokens.inc(labels, figures.completionTokens);
    if (figures.timeToFirstTokenSeconds !== null) this.#timeToFirstToken.observe(labels, figures.timeToFirstTokenSeconds);
    if (figures.tokensPerSecond !== null) this.#tokensPerSecond.observe(labels, figures.tokensPerSecond);
  }
}

/** `read`, called once for all the gauges of one scrape (prom-client collects them all at once). */
function oncePerScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let reading: Promise<T> | null = null;
  return () => (reading ??= read().finally(() => (reading = null)));
}

/** Gauges read from the node's registry at scrape time. */
function registerNodeGauges(registers: PrometheusRegistry[], nodeRegistry: Registry): void {
  const readVram = oncePerScrape(() => nodeRegistry.vramStatus());
  new Gauge({
    name: 'llm_node_vram_used_bytes',
    help: 'Device memory in use, per device',
    labelNames: ['device'],
    registers,
    async collect() {
      const { devices } = await readVram();
      this.reset();
      for (const device of devices) if (device.usedBytes !== null) this.set({ device: String(device.index) }, device.usedBytes);
    },
  });
  new Gauge({
    name: 'llm_node_vram_total_bytes',
    help: 'Device memory, per device',
    labelNames: ['device'],
    registers,
    async collect() {
      const { devices } = await readVram();
      this.reset();
      for (const device of devices) this.set({ device: String(device.index) }, device.totalBytes);
    },
  });
  new Gauge({
    name: 'llm_node_vram_limit_bytes',
    help: 'The VRAM limit models are admitted against',
    registers,
    async collect() {
      this.set((await readVram()).limitBytes);
    },
  });
  new Gauge({
    name: 'llm_node_engines',
    help: 'Engine plugins found, by id, backend and status (loaded, skipped, rejected)',
    labelNames: ['engine', 'status'],
    registers,
    collect() {
      this.reset();
      for (const engine of nodeRegistry.engines) this.set({ engine: engine.id, status: engine.status }, 1);
    },
  });
  new Gauge({
    name: 'llm_node_model_vram_bytes',
    help: 'Loaded models and the device memory each holds',
    labelNames: ['model', 'engine'],
    registers,
    collect() {
      this.reset();
      for (const model of nodeRegistry.models()) this.set({ model: model.id, engine: model.engineId }, model.vramBytes);
    },
  });
}

/**
 * The model-server protocol's gauges, per model (`model_name`), under vLLM's names: what Kubernetes' Gateway API
 * Inference Extension (llm-d's endpoint picker) and other routers that read vLLM scrape to choose a backend.
 * A model's KV gauges are left out when its engine does not report its KV cache.
 */
function registerModelServerGauges(registers: PrometheusRegistry[], nodeRegistry: Registry): void {
  const readActivity = oncePerScrape(() => nodeRegistry.modelActivity());
  const perModel = (name: string, help: string, value: (model: ModelActivity) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['model_name'],
      registers,
      async collect() {
        const activity = await readActivity();
        this.reset();
        for (const model of activity) {
          const figure = value(model);
          if (figure !== null) this.set({ model_name: model.id }, figure);
        }
      },
    });
  perModel('vllm:num_requests_running', 'Requests being decoded, per model', (model) => model.running);
  perModel(
    'vllm:num_requests_waiting',
    'Requests waiting for a free sequence or for their model to load, per model',
    (model) => model.waiting,
  );
  perModel(
    'vllm:kv_cache_usage_perc',
    "Fraction of the model's KV cache in use by running requests, 0 to 1",
    (model) => model.kvCacheUsage,
  );
  new Gauge({
    name: 'vllm:cache_config_info',
    help: 'The KV cache of each model: block_size tokens per block, num_gpu_blocks blocks',
    labelNames: ['model_name', 'block_size', 'num_gpu_blocks'],
    registers,
    async collect() {
      const activity = await readActivity();
      this.reset();
      // The ABI counts KV cells, one per token position: a block of one token.
      for (const model of activity) {
        if (model.kvCells !== null) this.set({ model_name: model.id, block_size: '1', num_gpu_blocks: String(model.kvCells) }, 1);
      }
    },
  });
}
