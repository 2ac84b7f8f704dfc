#include "model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "ggml-cpu.h"
#include "gguf.h"
#include "llama-ext.h"  // llama_get_memory_breakdown: llama.cpp's own accounting of what a context holds
#include "token_emitter.h"

namespace {

std::string mib(uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return text;
}

// What the estimate needs from a GGUF's metadata, read without loading the model.
struct GgufSummary {
    uint64_t weight_bytes = 0;
    int32_t n_ctx_train = 0;
    int64_t n_vocab = 0;
    int64_t n_embd = 0;
    int64_t n_ff = 0;                   // the widest layer's
    int64_t kv_values_per_token = 0;    // K and V values one token leaves in the cache, all layers
};

// An integer key, scalar or per-layer array (its largest element); `fallback` when absent.
int64_t gguf_integer(const gguf_context * gguf, const std::string & key, int64_t fallback,
                     std::vector<int64_t> * per_layer = nullptr) {
    const int64_t id = gguf_find_key(gguf, key.c_str());
    if (id < 0) {
        return fallback;
    }
    const auto element = [&](gguf_type type, const void * data, size_t i) -> int64_t {
        switch (type) {
            case GGUF_TYPE_UINT8: return static_cast<const uint8_t *>(data)[i];
            case GGUF_TYPE_INT8: return static_cast<const int8_t *>(data)[i];
            case GGUF_TYPE_UINT16: return static_cast<const uint16_t *>(data)[i];
            case GGUF_TYPE_INT16: return static_cast<const int16_t *>(data)[i];
            case GGUF_TYPE_UINT32: return static_cast<const uint32_t *>(data)[i];
            case GGUF_TYPE_INT32: return static_cast<const int32_t *>(data)[i];
            case GGUF_TYPE_UINT64: return static_cast<int64_t>(static_cast<const uint64_t *>(data)[i]);
            case GGUF_TYPE_INT64: return static_cast<const int64_t *>(data)[i];
            default: return -1;
        }
    };
    if (gguf_get_kv_type(gguf, id) != GGUF_TYPE_ARRAY) {
        const int64_t value = element(gguf_get_kv_type(gguf, id), gguf_get_val_data(gguf, id), 0);
        return value >= 0 ? value : fallback;
    }
    const gguf_type type = gguf_get_arr_type(gguf, id);
    if (type == GGUF_TYPE_STRING || type == GGUF_TYPE_ARRAY) {
        return fallback;
    }
    int64_t largest = fallback;
    for (size_t i = 0; i < gguf_get_arr_n(gguf, id); ++i) {
        const int64_t value = element(type, gguf_get_arr_data(gguf, id), i);
        largest = i == 0 ? value : std::max(largest, value);
        if (per_layer != nullptr) {
            per_layer->push_back(value);
        }
    }
    return largest;
}

// Checks that `path` is a whole GGUF file and reads what the estimate needs. llama.cpp answers a missing,
// foreign or truncated file with NULL, so the reasons are found here.
EngineError read_gguf(const std::string & path, GgufSummary * summary) {
    const std::filesystem::path file_path = std::filesystem::u8path(path);  // UTF-8 on every platform
    std::error_code error;
    const auto status = std::filesystem::status(file_path, error);
    if (!std::filesystem::exists(status)) {
        return engine_error(ERR_MODEL_NOT_FOUND, "model file not found: " + path);
    }
    if (!std::filesystem::is_regular_file(status)) {
        return engine_error(ERR_MODEL_NOT_FOUND, "not a model file: " + path);
    }
    {
        std::ifstream file(file_path, std::ios::binary);
        char magic[4] = {};
        if (!file) {
            return engine_error(ERR_MODEL_NOT_FOUND, "cannot open model file " + path + ": " + std::strerror(errno));
        }
        if (!file.read(magic, sizeof magic) || std::memcmp(magic, "GGUF", sizeof magic) != 0) {
            return engine_error(ERR_MODEL_CORRUPT, path + " is not a GGUF file (it does not start with 'GGUF')");
        }
    }

    LogCapture log;
    gguf_context * gguf = gguf_init_from_file(path.c_str(), {/*no_alloc=*/true, /*ctx=*/nullptr});
    if (gguf == nullptr) {
        return engine_error(ERR_MODEL_CORRUPT, path + " is not a readable GGUF file: " + log.text());
    }
    uint64_t data_end = 0;
    for (int64_t i = 0; i < gguf_get_n_tensors(gguf); ++i) {
        summary->weight_bytes += gguf_get_tensor_size(gguf, i);
        data_end = std::max<uint64_t>(data_end, gguf_get_tensor_offset(gguf, i) + gguf_get_tensor_size(gguf, i));
    }
    const uint64_t file_size = std::filesystem::file_size(file_path, error);
    const uint64_t needed = gguf_get_data_offset(gguf) + data_end;
    if (file_size < needed) {
        gguf_free(gguf);
        return engine_error(ERR_MODEL_CORRUPT, path + " is truncated: its tensors need " + std::to_string(needed) +
                                                   " bytes, the file has " + std::to_string(file_size));
    }

    const int64_t arch_id = gguf_find_key(gguf, "general.architecture");
    const std::string arch = arch_id >= 0 && gguf_get_kv_type(gguf, arch_id) == GGUF_TYPE_STRING
                                 ? gguf_get_val_str(gguf, arch_id) : "";
    const int64_t tokens_id = gguf_find_key(gguf, "tokenizer.ggml.tokens");
    summary->n_vocab = gguf_integer(gguf, arch + ".vocab_size",
                                    tokens_id >= 0 ? static_cast<int64_t>(gguf_get_arr_n(gguf, tokens_id)) : 0);
    summary->n_ctx_train = static_cast<int32_t>(std::min<int64_t>(gguf_integer(gguf, arch + ".context_length", 0), INT32_MAX));
    summary->n_embd = gguf_integer(gguf, arch + ".embedding_length", 0);
    summary->n_ff = gguf_integer(gguf, arch + ".feed_forward_length", 4 * summary->n_embd);
    const int64_t n_layer = gguf_integer(gguf, arch + ".block_count", 0);
    const int64_t n_head = std::max<int64_t>(1, gguf_integer(gguf, arch + ".attention.head_count", 1));
    std::vector<int64_t> heads_kv;
    const int64_t n_head_kv = gguf_integer(gguf, arch + ".attention.head_count_kv", n_head, &heads_kv);
    const int64_t key_length = gguf_integer(gguf, arch + ".attention.key_length", summary->n_embd / n_head);
    const int64_t value_length = gguf_integer(gguf, arch + ".attention.value_length", summary->n_embd / n_head);
    int64_t kv_heads_all_layers = 0;
    for (int64_t layer = 0; layer < n_layer; ++layer) {
        kv_heads_all_layers += static_cast<size_t>(layer) < heads_kv.size() ? heads_kv[layer] : n_head_kv;
    }
    summary->kv_values_per_token = kv_heads_all_layers * (key_length + value_length);
    gguf_free(gguf);
    return {};
}

// Why llama_model_load_from_file returned NULL, from what llama.cpp logged on the way.
EngineError load_failure(const std::string & path, const LogCapture & log) {
    int32_t code = ERR_MODEL_CORRUPT;  // a GGUF that llama.cpp cannot read: truncated, missing tensors, bad shapes
    if (log.contains("unknown model architecture")) {
        code = ERR_UNSUPPORTED;
    } else if (log.contains("failed to allocate") || log.contains("unable to allocate") ||
               log.contains("out of memory")) {
        code = ERR_OUT_OF_MEMORY;
    }
    const std::string said = log.text();
    return engine_error(code, "llama.cpp could not load " + path + (said.empty() ? "" : ": " + said));
}

EngineError context_failure(const char * what, const LogCapture & log) {
    const bool memory = log.contains("alloc") || log.contains("out of memory");
    const std::string said = log.text();
    return engine_error(memory ? ERR_OUT_OF_MEMORY : ERR_INTERNAL,
                        std::string(what) + (said.empty() ? "" : ": " + said));
}

llama_model_params model_params(const Runtime & runtime) {
    llama_model_params params = llama_model_default_params();
    params.devices = const_cast<ggml_backend_dev_t *>(runtime.devices.data());
    params.n_gpu_layers = runtime.on_cpu ? 0 : -1;  // all layers on the GPU
    return params;
}

struct Shape {
    int32_t n_ctx_request;
    int32_t n_parallel;
};

EngineError resolve_shape(const LoadSettings & settings, int32_t n_ctx_train, Shape * shape) {
    shape->n_parallel = settings.n_parallel > 0 ? settings.n_parallel : Model::kDefaultParallel;
    shape->n_ctx_request = settings.context_length > 0 ? settings.context_length : n_ctx_train;
    if (shape->n_ctx_request < 1) {
        return engine_error(ERR_INVALID_ARGUMENT, "the model names no context length; give one");
    }
    if (shape->n_parallel > static_cast<int32_t>(llama_max_parallel_sequences())) {
        return engine_error(ERR_INVALID_ARGUMENT, "n_parallel " + std::to_string(shape->n_parallel) +
                                                      " exceeds llama.cpp's limit of " +
                                                      std::to_string(llama_max_parallel_sequences()));
    }
    if (static_cast<int64_t>(shape->n_ctx_request) * shape->n_parallel > INT32_MAX) {
        return engine_error(ERR_INVALID_ARGUMENT, "context_length x n_parallel is too large");
    }
    return {};
}

// The KV cache holds context_length tokens for each of the n_parallel sequences, each in its own stream
// (kv_unified off): a request can never take another's room, and attention for a sequence only reads its own
// stream, which is faster when the requests share no prefix.
llama_context_params context_params(const Runtime & runtime, const Shape & shape) {
    llama_context_params params = llama_context_default_params();
    params.n_ctx = static_cast<uint32_t>(shape.n_ctx_request) * shape.n_parallel;
    params.n_seq_max = shape.n_parallel;
    params.n_batch = std::min<uint32_t>(params.n_batch, params.n_ctx);
    params.n_ubatch = std::min(params.n_ubatch, params.n_batch);
    // One logits row per sequence and batch is all the decode loop asks for; llama.cpp would otherwise
    // reserve compute and output buffers for n_batch rows of the vocabulary (256 MiB at 128k tokens).
    params.n_outputs_max = shape.n_parallel;
    params.n_threads = runtime.n_threads;
    params.n_threads_batch = runtime.n_threads;
    params.kv_unified = false;
    params.no_perf = true;
    return params;
}

// Device memory a context and its model hold. On a GPU backend host buffers (the input embeddings, the
// logits) are not counted: they are not VRAM. On `cpu` everything is host memory and all of it counts.
uint64_t held_bytes(const llama_context * ctx, const Runtime & runtime) {
    uint64_t total = 0;
    for (const auto & [buffer_type, memory] : llama_get_memory_breakdown(ctx)) {
        if (runtime.on_cpu || !ggml_backend_buft_is_host(buffer_type)) {
            total += memory.total();
        }
    }
    return total;
}

// A persistent pool for the CPU backend's threads, as llama-server and llama-bench attach: without one ggml
// starts and joins its threads for every llama_decode.
struct ThreadpoolFunctions {
    decltype(ggml_threadpool_new) * create = nullptr;
    decltype(ggml_threadpool_free) * destroy = nullptr;
};

ThreadpoolFunctions threadpool_functions() {
    ThreadpoolFunctions functions;
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (cpu != nullptr) {
        ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
        functions.create = reinterpret_cast<decltype(ggml_threadpool_new) *>(
            ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
        functions.destroy = reinterpret_cast<decltype(ggml_threadpool_free) *>(
            ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
    }
    return functions;
}

// Runs one token through the fresh context so that the first request does not pay for lazy initialisation
// (weight repacking, graph allocation), as llama-server does at start.
bool warm_up(llama_context * ctx, const llama_vocab * vocab) {
    llama_token token = llama_vocab_bos(vocab);
    if (token == LLAMA_TOKEN_NULL) {
        token = 0;
    }
    const bool ok = llama_decode(ctx, llama_batch_get_one(&token, 1)) == 0;
    llama_memory_clear(llama_get_memory(ctx), true);
    return ok;
}

}  // namespace

struct Model::Slot {
    llama_seq_id seq;
    GenerationRequest * request = nullptr;
    std::vector<llama_token> cached;  // tokens whose K/V the sequence holds, in order (kept for prefix reuse)
    size_t prompt_done = 0;           // prompt tokens in `cached`
    llama_token next = LLAMA_TOKEN_NULL;  // sampled, still to be decoded
    int32_t output = -1;                  // this slot's logits row in the batch just decoded
    uint64_t last_used = 0;
    std::optional<Sampler> sampler;
    std::optional<TokenEmitter> emitter;

    bool prompting() const { return request != nullptr && prompt_done < request->prompt.size(); }
    bool generating() const { return request != nullptr && prompt_done == request->prompt.size(); }
};

EngineError Model::estimate(const LoadSettings & settings, const Runtime & runtime, uint64_t * bytes) {
    GgufSummary gguf;
    if (EngineError error = read_gguf(settings.path, &gguf)) {
        return error;
    }
    Shape shape;
    if (EngineError error = resolve_shape(settings, gguf.n_ctx_train, &shape)) {
        return error;
    }
    // Mirrors llama.cpp's sizes (README.md, "Memory"): each sequence's context is padded to 256 cells; the
    // KV cache is F16; the compute buffer holds a micro-batch's activations (at most 3 floats per feed-forward
    // and 4 per embedding value, measured), its attention mask (F16, micro-batch x context) and the logits
    // rows, which the output buffer holds once more.
    const llama_context_params params = context_params(runtime, shape);
    const uint64_t n_ctx_seq = (static_cast<uint64_t>(shape.n_ctx_request) + 255) / 256 * 256;
    const uint64_t n_ubatch = params.n_ubatch;
    const uint64_t kv = n_ctx_seq * shape.n_parallel * gguf.kv_values_per_token * 2;
    const uint64_t compute = n_ubatch * (3 * gguf.n_ff + 4 * gguf.n_embd) * 4 + n_ubatch * n_ctx_seq * 2 +
                             2 * static_cast<uint64_t>(shape.n_parallel) * gguf.n_vocab * 4;
    *bytes = gguf.weight_bytes + kv + compute;
    return {};
}

EngineError Model::load(const LoadSettings & settings, const Runtime & runtime, uint64_t budget_bytes,
                        std::unique_ptr<Model> * out) {
    uint64_t estimate_bytes = 0;
    if (EngineError error = estimate(settings, runtime, &estimate_bytes)) {
        return error;
    }
    const auto over_budget = [&](uint64_t bytes) {
        return engine_error(ERR_OUT_OF_MEMORY, "the model needs " + mib(bytes) +
                                                   " (weights, KV cache, compute buffers) but its budget is " +
                                                   mib(budget_bytes));
    };
    if (budget_bytes > 0 && estimate_bytes > budget_bytes) {
        return over_budget(estimate_bytes);
    }

    LogCapture log;
    llama_model * model = llama_model_load_from_file(settings.path.c_str(), model_params(runtime));
    if (model == nullptr) {
        return load_failure(settings.path, log);
    }
    Shape shape;
    if (EngineError error = resolve_shape(settings, llama_model_n_ctx_train(model), &shape)) {
        llama_model_free(model);
        return error;
    }
    llama_context * ctx = llama_init_from_model(model, context_params(runtime, shape));
    if (ctx == nullptr) {
        llama_model_free(model);
        return context_failure("llama.cpp could not create a context for the model", log);
    }
    const int32_t n_ctx_request = std::min<int32_t>(shape.n_ctx_request, llama_n_ctx_seq(ctx));
    out->reset(new Model(model, ctx, n_ctx_request, shape.n_parallel, held_bytes(ctx, runtime)));
    Model & loaded = **out;
    if (budget_bytes > 0 && loaded.memory_bytes_ > budget_bytes) {  // the estimate fell short
        const uint64_t held = loaded.memory_bytes_;
        out->reset();
        return over_budget(held);
    }

    const ThreadpoolFunctions threadpool = threadpool_functions();
    if (threadpool.create != nullptr) {
        ggml_threadpool_params params = ggml_threadpool_params_default(runtime.n_threads);
        loaded.threadpool_ = threadpool.create(&params);
        if (loaded.threadpool_ != nullptr) {
            llama_attach_threadpool(ctx, loaded.threadpool_, nullptr);
        }
    }
    if (!warm_up(ctx, loaded.vocab_)) {
        out->reset();
        return context_failure("llama.cpp could not run the model", log);
    }
    loaded.loop_ = std::thread(&Model::run, &loaded);
    return {};
}

Model::Model(llama_model * model, llama_context * ctx, int32_t n_ctx_request, int32_t n_parallel,
             uint64_t memory_bytes)
    : model_(model),
      ctx_(ctx),
      vocab_(llama_model_get_vocab(model)),
      n_vocab_(llama_vocab_n_tokens(vocab_)),
      n_ctx_request_(n_ctx_request),
      memory_bytes_(memory_bytes),
      batch_capacity_(static_cast<int32_t>(llama_n_batch(ctx))) {
    batch_ = llama_batch_init(batch_capacity_, 0, 1);
    for (int32_t i = 0; i < n_parallel; ++i) {
        slots_.push_back(std::make_unique<Slot>());
        slots_.back()->seq = i;
    }
}

Model::~Model() {
    stop();
    llama_batch_free(batch_);
    llama_free(ctx_);
    if (threadpool_ != nullptr) {
        threadpool_functions().destroy(threadpool_);
    }
    llama_model_free(model_);
}

EngineError Model::tokenize(const char * text, int32_t len, bool add_special, bool parse_special,
                            std::vector<llama_token> * tokens) const {
    tokens->resize(static_cast<size_t>(len) + 8);  // at most a token per byte, plus the special tokens added
    int32_t n = llama_tokenize(vocab_, text, len, tokens->data(), static_cast<int32_t>(tokens->size()),
                               add_special, parse_special);
    if (n < 0 && n != INT32_MIN) {
        tokens->resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab_, text, len, tokens->data(), -n, add_special, parse_special);
    }
    if (n < 0) {
        return engine_error(ERR_INVALID_ARGUMENT, "the prompt could not be tokenized");
    }
    tokens->resize(static_cast<size_t>(n));
    if (n == 0) {
        return engine_error(ERR_INVALID_ARGUMENT, "the prompt is empty");
    }
    if (n >= n_ctx_request_) {
        return engine_error(ERR_CONTEXT_OVERFLOW, "the prompt is " + std::to_string(n) +
                                                      " tokens, which leaves no room in the context of " +
                                                      std::to_string(n_ctx_request_));
    }
    return {};
}

void Model::generate(GenerationRequest * request) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopping_) {
        request->error = engine_error(ERR_MODEL_NOT_LOADED, "the model was unloaded");
        return;
    }
    queue_.push_back(request);
    wake_.notify_one();
    request->done_cv.wait(lock, [&] { return request->done; });
}

void Model::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) {
            return;
        }
        stopping_ = true;
    }
    wake_.notify_all();
    if (loop_.joinable()) {
        loop_.join();
    }
    const EngineError unloaded = engine_error(ERR_MODEL_NOT_LOADED, "the model was unloaded");
    for (auto & slot : slots_) {
        if (slot->request != nullptr) {
            fail(*slot, unloaded);
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (GenerationRequest * request : queue_) {
        request->error = unloaded;
        request->done = true;
        request->done_cv.notify_one();
    }
    queue_.clear();
}

void Model::run() {
    while (step()) {
    }
}

// One round of continuous batching: hand arrived requests to free slots, then decode one batch holding the
// pending token of every generating slot and as much prompt as fits, then sample for every slot that got logits.
bool Model::step() {
    std::vector<GenerationRequest *> arrived;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        const auto busy = [&] {
            return std::any_of(slots_.begin(), slots_.end(), [](const auto & slot) { return slot->request; });
        };
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || busy(); });
        if (stopping_) {
            return false;
        }
        size_t free_slots = std::count_if(slots_.begin(), slots_.end(), [](const auto & s) { return !s->request; });
        while (!queue_.empty() && arrived.size() < free_slots) {
            arrived.push_back(queue_.front());
            queue_.pop_front();
        }
    }
    for (GenerationRequest * request : arrived) {
        // The free slot whose cached tokens share the longest prefix with the prompt, when that prefix is a
        // real part of what the slot holds; else the least recently used. Without the second condition two
        // prompts that share only the chat template's header would evict each other's cache in turn
        // (llama.cpp's server has the same rule: --slot-prompt-similarity 0.1).
        Slot * reuse = nullptr;
        Slot * oldest = nullptr;
        size_t best_shared = 0;
        for (auto & slot : slots_) {
            if (slot->request != nullptr) {
                continue;
            }
            const auto mismatch = std::mismatch(slot->cached.begin(), slot->cached.end(), request->prompt.begin(),
                                                request->prompt.end());
            const size_t shared = static_cast<size_t>(mismatch.first - slot->cached.begin());
            if (shared > best_shared && shared * 10 >= slot->cached.size()) {
                reuse = slot.get();
                best_shared = shared;
            }
            if (oldest == nullptr || slot->last_used < oldest->last_used) {
                oldest = slot.get();
            }
        }
        assign(reuse != nullptr ? *reuse : *oldest, request);
    }

    batch_.n_tokens = 0;
    const auto add = [&](llama_token token, const Slot & slot, bool output) {
        const int32_t i = batch_.n_tokens++;
        batch_.token[i] = token;
        batch_.pos[i] = static_cast<llama_pos>(slot.cached.size());
        batch_.n_seq_id[i] = 1;
        batch_.seq_id[i][0] = slot.seq;
        batch_.logits[i] = output;
    };
    for (auto & slot : slots_) {
        slot->output = -1;
        if (slot->generating()) {
            slot->output = batch_.n_tokens;
            add(slot->next, *slot, true);
            slot->cached.push_back(slot->next);
        }
    }
    for (auto & slot : slots_) {
        if (!slot->prompting() || batch_.n_tokens == batch_capacity_) {
            continue;
        }
        // Between prompt batches the host may cancel a request that has not produced a token yet.
        if (slot->emitter->poll() == TokenEmitter::Outcome::Refused) {
            finish(*slot, ENGINE_FINISH_CANCELLED);
            continue;
        }
        const std::vector<llama_token> & prompt = slot->request->prompt;
        const size_t take = std::min(prompt.size() - slot->prompt_done,
                                     static_cast<size_t>(batch_capacity_ - batch_.n_tokens));
        for (size_t i = 0; i < take; ++i) {
            const llama_token token = prompt[slot->prompt_done++];
            const bool last = slot->prompt_done == prompt.size();
            if (last) {
                slot->output = batch_.n_tokens;
            }
            add(token, *slot, last);
            slot->cached.push_back(token);
        }
    }
    if (batch_.n_tokens == 0) {
        return true;
    }

    LogCapture log;
    const int32_t status = llama_decode(ctx_, batch_);
    if (status != 0) {
        const std::string said = log.text();
        const EngineError error = engine_error(
            ERR_INTERNAL, "llama_decode failed (" + std::to_string(status) + ")" + (said.empty() ? "" : ": " + said));
        for (auto & slot : slots_) {
            if (slot->request != nullptr) {
                fail(*slot, error);
            }
        }
        return true;
    }
    for (auto & slot : slots_) {
        if (slot->output < 0) {
            continue;
        }
        const float * logits = llama_get_logits_ith(ctx_, slot->output);
        if (logits == nullptr) {
            fail(*slot, engine_error(ERR_INTERNAL, "llama.cpp gave no logits for the request: " + log.text()));
            continue;
        }
        take_token(*slot, logits);
    }
    return true;
}

void Model::assign(Slot & slot, GenerationRequest * request) {
    // Keep the K/V of the prefix the prompt shares with what the sequence holds; the prompt's last token is
    // decoded again in any case, for its logits.
    const size_t shared = static_cast<size_t>(
        std::mismatch(slot.cached.begin(), slot.cached.end(), request->prompt.begin(), request->prompt.end()).first -
        slot.cached.begin());
    size_t keep = std::min(shared, request->prompt.size() - 1);
    llama_memory_t memory = llama_get_memory(ctx_);
    if (!llama_memory_seq_rm(memory, slot.seq, static_cast<llama_pos>(keep), -1)) {
        llama_memory_seq_rm(memory, slot.seq, -1, -1);
        keep = 0;
    }
    slot.cached.resize(keep);
    slot.prompt_done = keep;
    slot.request = request;
    slot.sampler.emplace(request->sampling);
    slot.emitter.emplace(request->stops, request->on_token, request->user_data);
}

void Model::take_token(Slot & slot, const float * logits_row) {
    GenerationRequest & request = *slot.request;
    float logprob = 0.0f;
    // The row is llama.cpp's output buffer, rewritten by the next decode; the penalties may edit it in place.
    const llama_token token =
        slot.sampler->sample(const_cast<float *>(logits_row), n_vocab_, request.logprobs ? &logprob : nullptr);
    slot.sampler->accept(token);
    ++request.completion_tokens;

    TokenEmitter::Outcome outcome;
    int32_t reason = ENGINE_FINISH_STOP;
    if (!request.ignore_eos && llama_vocab_is_eog(vocab_, token)) {
        outcome = slot.emitter->flush();  // the end-of-generation token itself is counted, not emitted
    } else {
        char piece[128];
        std::string long_piece;
        const char * text = piece;
        int32_t length = llama_token_to_piece(vocab_, token, piece, sizeof piece, 0, false);
        if (length < 0) {
            long_piece.resize(static_cast<size_t>(-length));
            length = llama_token_to_piece(vocab_, token, long_piece.data(), -length, 0, false);
            text = long_piece.data();
        }
        outcome = slot.emitter->push(token, logprob, text, static_cast<size_t>(std::max(length, 0)));
        if (outcome == TokenEmitter::Outcome::Continue) {
            const bool at_max_tokens = request.max_tokens > 0 && request.completion_tokens >= request.max_tokens;
            // The prompt and the generated tokens (this one not yet decoded) fill the request's context.
            const bool context_full = slot.cached.size() + 1 >= static_cast<size_t>(n_ctx_request_);
            if (!at_max_tokens && !context_full) {
                slot.next = token;
                return;
            }
            reason = ENGINE_FINISH_LENGTH;
            outcome = slot.emitter->flush();
        }
    }
    finish(slot, outcome == TokenEmitter::Outcome::Refused ? ENGINE_FINISH_CANCELLED : reason);
}

void Model::finish(Slot & slot, int32_t reason) {
    GenerationRequest * request = slot.request;
    slot.request = nullptr;
    slot.sampler.reset();
    slot.emitter.reset();
    slot.last_used = ++clock_;
    std::lock_guard<std::mutex> lock(mutex_);
    request->finish_reason = reason;
    request->done = true;
    request->done_cv.notify_one();
}

void Model::fail(Slot & slot, EngineError error) {
    slot.request->error = std::move(error);
    llama_memory_seq_rm(llama_get_memory(ctx_), slot.seq, -1, -1);
    slot.cached.clear();
    finish(slot, ENGINE_FINISH_STOP);
}
