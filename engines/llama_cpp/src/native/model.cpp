#include "model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "ggml-cpu.h"  // the thread pool types; its functions come from the CPU backend
#include "gguf.h"
#include "llama_library.h"
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
    int64_t n_ff = 0;                 // the widest layer's
    int64_t kv_values_per_token = 0;  // K and V values one token leaves in the cache, all layers
};

// An integer key, scalar or per-layer array (its largest element); `fallback` when absent.
int64_t gguf_integer(const gguf_context* gguf, const std::string& key, int64_t fallback,
                     std::vector<int64_t>* per_layer = nullptr) {
    const int64_t id = lib.gguf_find_key(gguf, key.c_str());
    if (id < 0) {
        return fallback;
    }
    const auto element = [&](gguf_type type, const void* data, size_t i) -> int64_t {
        switch (type) {
            case GGUF_TYPE_UINT8:
                return static_cast<const uint8_t*>(data)[i];
            case GGUF_TYPE_INT8:
                return static_cast<const int8_t*>(data)[i];
            case GGUF_TYPE_UINT16:
                return static_cast<const uint16_t*>(data)[i];
            case GGUF_TYPE_INT16:
                return static_cast<const int16_t*>(data)[i];
            case GGUF_TYPE_UINT32:
                return static_cast<const uint32_t*>(data)[i];
            case GGUF_TYPE_INT32:
                return static_cast<const int32_t*>(data)[i];
            case GGUF_TYPE_UINT64:
                return static_cast<int64_t>(static_cast<const uint64_t*>(data)[i]);
            case GGUF_TYPE_INT64:
                return static_cast<const int64_t*>(data)[i];
            default:
                return -1;
        }
    };
    if (lib.gguf_get_kv_type(gguf, id) != GGUF_TYPE_ARRAY) {
        const int64_t value = element(lib.gguf_get_kv_type(gguf, id), lib.gguf_get_val_data(gguf, id), 0);
        return value >= 0 ? value : fallback;
    }
    const gguf_type type = lib.gguf_get_arr_type(gguf, id);
    if (type == GGUF_TYPE_STRING || type == GGUF_TYPE_ARRAY) {
        return fallback;
    }
    int64_t largest = fallback;
    for (size_t i = 0; i < lib.gguf_get_arr_n(gguf, id); ++i) {
        const int64_t value = element(type, lib.gguf_get_arr_data(gguf, id), i);
        largest = i == 0 ? value : std::max(largest, value);
        if (per_layer != nullptr) {
            per_layer->push_back(value);
        }
    }
    return largest;
}

// Checks that `path` is a whole GGUF file and reads what the estimate needs. llama.cpp answers a missing,
// foreign or truncated file with NULL, so the reasons are found here.
EngineError read_gguf(const std::string& path, GgufSummary* summary) {
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
    gguf_context* gguf = lib.gguf_init_from_file(path.c_str(), {/*no_alloc=*/true, /*ctx=*/nullptr});
    if (gguf == nullptr) {
        return engine_error(ERR_MODEL_CORRUPT, path + " is not a readable GGUF file: " + log.text());
    }
    uint64_t data_end = 0;
    for (int64_t i = 0; i < lib.gguf_get_n_tensors(gguf); ++i) {
        summary->weight_bytes += lib.gguf_get_tensor_size(gguf, i);
        data_end =
            std::max<uint64_t>(data_end, lib.gguf_get_tensor_offset(gguf, i) + lib.gguf_get_tensor_size(gguf, i));
    }
    const uint64_t file_size = std::filesystem::file_size(file_path, error);
    const uint64_t needed = lib.gguf_get_data_offset(gguf) + data_end;
    if (file_size < needed) {
        lib.gguf_free(gguf);
        return engine_error(ERR_MODEL_CORRUPT, path + " is truncated: its tensors need " + std::to_string(needed) +
                                                   " bytes, the file has " + std::to_string(file_size));
    }

    const int64_t arch_id = lib.gguf_find_key(gguf, "general.architecture");
    const std::string arch = arch_id >= 0 && lib.gguf_get_kv_type(gguf, arch_id) == GGUF_TYPE_STRING
                                 ? lib.gguf_get_val_str(gguf, arch_id)
                                 : "";
    const int64_t tokens_id = lib.gguf_find_key(gguf, "tokenizer.ggml.tokens");
    summary->n_vocab = gguf_integer(gguf, arch + ".vocab_size",
                                    tokens_id >= 0 ? static_cast<int64_t>(lib.gguf_get_arr_n(gguf, tokens_id)) : 0);
    summary->n_ctx_train =
        static_cast<int32_t>(std::min<int64_t>(gguf_integer(gguf, arch + ".context_length", 0), INT32_MAX));
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
    lib.gguf_free(gguf);
    return {};
}

// Why llama_model_load_from_file returned NULL, from what llama.cpp logged on the way.
EngineError load_failure(const std::string& path, const LogCapture& log) {
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

EngineError context_failure(const char* what, const LogCapture& log) {
    const bool memory = log.contains("alloc") || log.contains("out of memory");
    const std::string said = log.text();
    return engine_error(memory ? ERR_OUT_OF_MEMORY : ERR_INTERNAL,
                        std::string(what) + (said.empty() ? "" : ": " + said));
}

llama_model_params model_params(const Runtime& runtime) {
    llama_model_params params = lib.llama_model_default_params();
    params.devices = const_cast<ggml_backend_dev_t*>(runtime.devices.data());
    params.n_gpu_layers = runtime.on_cpu ? 0 : -1;  // all layers on the GPU
    return params;
}

struct Shape {
    int32_t n_ctx_request;
    int32_t n_parallel;
};

EngineError resolve_shape(const LoadSettings& settings, int32_t n_ctx_train, Shape* shape) {
    shape->n_parallel = settings.n_parallel > 0 ? settings.n_parallel : Model::kDefaultParallel;
    shape->n_ctx_request = settings.context_length > 0 ? settings.context_length : n_ctx_train;
    if (shape->n_ctx_request < 1) {
        return engine_error(ERR_INVALID_ARGUMENT, "the model names no context length; give one");
    }
    if (shape->n_parallel > static_cast<int32_t>(lib.llama_max_parallel_sequences())) {
        return engine_error(ERR_INVALID_ARGUMENT, "n_parallel " + std::to_string(shape->n_parallel) +
                                                      " exceeds llama.cpp's limit of " +
                                                      std::to_string(lib.llama_max_parallel_sequences()));
    }
    if (static_cast<int64_t>(shape->n_ctx_request) * shape->n_parallel > INT32_MAX) {
        return engine_error(ERR_INVALID_ARGUMENT, "context_length x n_parallel is too large");
    }
    return {};
}

// The KV cache holds context_length tokens for each of the n_parallel sequences, each in its own stream
// (kv_unified off): a request can never take another's room, and attention for a sequence only reads its own
// stream, which is faster when the requests share no prefix.
llama_context_params context_params(const Runtime& runtime, const Shape& shape) {
    llama_context_params params = lib.llama_context_default_params();
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

// What a device has free now; 0 where it cannot tell.
uint64_t device_free_bytes(ggml_backend_dev_t device) {
    size_t free = 0;
    size_t total = 0;
    lib.ggml_backend_dev_memory(device, &free, &total);
    return free;
}

// A persistent pool for the CPU backend's threads, as llama-server and llama-bench attach: without one ggml
// starts and joins its threads for every llama_decode.
struct ThreadpoolFunctions {
    decltype(ggml_threadpool_new)* create = nullptr;
    decltype(ggml_threadpool_free)* destroy = nullptr;
};

ThreadpoolFunctions threadpool_functions() {
    ThreadpoolFunctions functions;
    ggml_backend_dev_t cpu = lib.ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (cpu != nullptr) {
        ggml_backend_reg_t reg = lib.ggml_backend_dev_backend_reg(cpu);
        functions.create = reinterpret_cast<decltype(ggml_threadpool_new)*>(
            lib.ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
        functions.destroy = reinterpret_cast<decltype(ggml_threadpool_free)*>(
            lib.ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
    }
    return functions;
}

// Runs one token through the fresh context so that the first request does not pay for lazy initialisation
// (weight repacking, graph allocation), as llama-server does at start.
bool warm_up(llama_context* ctx, const llama_vocab* vocab) {
    llama_token token = lib.llama_vocab_bos(vocab);
    if (token == LLAMA_TOKEN_NULL) {
        token = 0;
    }
    const bool ok = lib.llama_decode(ctx, lib.llama_batch_get_one(&token, 1)) == 0;
    lib.llama_memory_clear(lib.llama_get_memory(ctx), true);
    return ok;
}

// The memory a model takes, in the parts llama.cpp allocates.
struct Footprint {
    uint64_t weights = 0;
    uint64_t kv = 0;
    uint64_t compute = 0;  // compute and output buffers

    uint64_t total() const { return weights + kv + compute; }
};

// The memory a model with this shape takes, as llama.cpp allocates it (README.md, "Memory"): each sequence's
// context is padded to 256 cells; the KV cache is F16; the compute buffer holds a micro-batch's activations (at
// most 3 floats per feed-forward and 4 per embedding value, measured), its attention mask (F16, micro-batch x
// context) and the logits rows, which the output buffer holds once more.
Footprint footprint(const GgufSummary& gguf, const Shape& shape, const Runtime& runtime) {
    const llama_context_params params = context_params(runtime, shape);
    const uint64_t n_ctx_seq = (static_cast<uint64_t>(shape.n_ctx_request) + 255) / 256 * 256;
    const uint64_t n_ubatch = params.n_ubatch;
    Footprint bytes;
    bytes.weights = gguf.weight_bytes;
    bytes.kv = n_ctx_seq * shape.n_parallel * gguf.kv_values_per_token * 2;
    bytes.compute = n_ubatch * (3 * gguf.n_ff + 4 * gguf.n_embd) * 4 + n_ubatch * n_ctx_seq * 2 +
                    2 * static_cast<uint64_t>(shape.n_parallel) * gguf.n_vocab * 4;
    return bytes;
}

}  // namespace

struct Model::Slot {
    llama_seq_id seq;
    GenerationRequest* request = nullptr;
    std::vector<llama_token> cached;      // tokens whose K/V the sequence holds, in order (kept for prefix reuse)
    size_t prompt_done = 0;               // prompt tokens in `cached`
    llama_token next = LLAMA_TOKEN_NULL;  // sampled, still to be decoded
    int32_t output = -1;                  // this slot's logits row in the batch just decoded
    uint64_t last_used = 0;
    std::optional<Sampler> sampler;
    std::optional<TokenEmitter> emitter;

    bool prompting() const { return request != nullptr && prompt_done < request->prompt.size(); }
    bool generating() const { return request != nullptr && prompt_done == request->prompt.size(); }
};

EngineError Model::estimate(const LoadSettings& settings, const Runtime& runtime, uint64_t* bytes) {
    GgufSummary gguf;
    if (EngineError error = read_gguf(settings.path, &gguf)) {
        return error;
    }
    Shape shape;
    if (EngineError error = resolve_shape(settings, gguf.n_ctx_train, &shape)) {
        return error;
    }
    *bytes = footprint(gguf, shape, runtime).total();
    return {};
}

EngineError Model::load(const LoadSettings& settings, const Runtime& runtime, uint64_t budget_bytes,
                        std::unique_ptr<Model>* out) {
    GgufSummary gguf;
    if (EngineError error = read_gguf(settings.path, &gguf)) {
        return error;
    }
    Shape shape;
    if (EngineError error = resolve_shape(settings, gguf.n_ctx_train, &shape)) {
        return error;
    }
    const Footprint estimated = footprint(gguf, shape, runtime);
    const auto over_budget = [&](uint64_t bytes) {
        return engine_error(ERR_OUT_OF_MEMORY, "the model needs " + mib(bytes) +
                                                   " (weights, KV cache, compute buffers) but its budget is " +
                                                   mib(budget_bytes));
    };
    if (budget_bytes > 0 && estimated.total() > budget_bytes) {
        return over_budget(estimated.total());
    }

    ggml_backend_dev_t device = runtime.on_cpu ? nullptr : runtime.devices.front();
    const uint64_t free_before = device != nullptr ? device_free_bytes(device) : 0;
    LogCapture log;
    llama_model* model = lib.llama_model_load_from_file(settings.path.c_str(), model_params(runtime));
    if (model == nullptr) {
        return load_failure(settings.path, log);
    }
    llama_context* ctx = lib.llama_init_from_model(model, context_params(runtime, shape));
    if (ctx == nullptr) {
        lib.llama_model_free(model);
        return context_failure("llama.cpp could not create a context for the model", log);
    }
    const int32_t n_ctx_request = std::min<int32_t>(shape.n_ctx_request, lib.llama_n_ctx_seq(ctx));
    out->reset(new Model(model, ctx, n_ctx_request, shape.n_parallel));
    Model& loaded = **out;
    const ThreadpoolFunctions threadpool = threadpool_functions();
    if (threadpool.create != nullptr) {
        ggml_threadpool_params params = lib.ggml_threadpool_params_default(runtime.n_threads);
        loaded.threadpool_ = threadpool.create(&params);
        if (loaded.threadpool_ != nullptr) {
            lib.llama_attach_threadpool(ctx, loaded.threadpool_, nullptr);
        }
    }
    if (!warm_up(ctx, loaded.vocab_)) {
        out->reset();
        return context_failure("llama.cpp could not run the model", log);
    }

    // On a GPU, what the device lost across the load and the first decode (weights, KV cache, compute buffers
    // and the backend's own workspace), unless another process freed memory meanwhile. On `cpu` the weights as
    // loaded, the KV cache and compute buffers as llama.cpp sizes them: they are host memory, where the loss
    // cannot be told apart from the rest of the system's.
    const uint64_t free_after = device != nullptr ? device_free_bytes(device) : 0;
    if (device != nullptr && free_before > free_after) {
        loaded.memory_bytes_ = free_before - free_after;
    } else if (device != nullptr) {
        loaded.memory_bytes_ = estimated.total();
    } else {
        loaded.memory_bytes_ = lib.llama_model_size(model) + estimated.kv + estimated.compute;
    }
    if (budget_bytes > 0 && loaded.memory_bytes_ > budget_bytes) {  // the estimate fell short
        const uint64_t held = loaded.memory_bytes_;
        out->reset();
        return over_budget(held);
    }
    loaded.loop_ = std::thread(&Model::run, &loaded);
    return {};
}

Model::Model(llama_model* model, llama_context* ctx, int32_t n_ctx_request, int32_t n_parallel)
    : model_(model),
      ctx_(ctx),
      vocab_(lib.llama_model_get_vocab(model)),
      n_vocab_(lib.llama_vocab_n_tokens(vocab_)),
      tokenizer_(vocab_),
      n_ctx_request_(n_ctx_request),
      batch_capacity_(static_cast<int32_t>(lib.llama_n_batch(ctx))) {
    batch_ = lib.llama_batch_init(batch_capacity_, 0, 1);
    for (int32_t i = 0; i < n_parallel; ++i) {
        slots_.push_back(std::make_unique<Slot>());
        slots_.back()->seq = i;
    }
}

Model::~Model() {
    stop();
    lib.llama_batch_free(batch_);
    lib.llama_free(ctx_);
    if (threadpool_ != nullptr) {
        threadpool_functions().destroy(threadpool_);
    }
    lib.llama_model_free(model_);
}

EngineError Model::tokenize(const char* text, int32_t len, bool add_special, bool parse_special,
                            const std::function<bool()>& keep_going, std::vector<llama_token>* tokens,
                            bool* cancelled) const {
    if (EngineError error = tokenizer_.tokenize(text, static_cast<size_t>(len), add_special, parse_special, keep_going,
                                                tokens, cancelled)) {
        return error;
    }
    if (*cancelled) {
        return {};
    }
    const size_t n = tokens->size();
    if (n == 0) {
        return engine_error(ERR_INVALID_ARGUMENT, "the prompt is empty");
    }
    if (n >= static_cast<size_t>(n_ctx_request_)) {
        return engine_error(ERR_CONTEXT_OVERFLOW, "the prompt is " + std::to_string(n) +
                                                      " tokens, which leaves no room in the context of " +
                                                      std::to_string(n_ctx_request_));
    }
    return {};
}

void Model::generate(GenerationRequest* request) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopping_) {
        request->error = engine_error(ERR_MODEL_NOT_LOADED, "the model was unloaded");
        return;
    }
    queue_.push_back(request);
    queued_ = static_cast<int32_t>(queue_.size());
    wake_.notify_one();
    request->done_cv.wait(lock, [&] { return request->done; });
}

void Model::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (loop_.joinable()) {
        loop_.join();
    }
    fail_all(engine_error(ERR_MODEL_NOT_LOADED, "the model was unloaded"));
}

void Model::fail_all(const EngineError& error) {
    for (auto& slot : slots_) {
        if (slot->request != nullptr) {
            fail(*slot, error);
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (GenerationRequest* request : queue_) {
        request->error = error;
        request->done = true;
        request->done_cv.notify_one();
    }
    queue_.clear();
}

// The decode loop's thread. An exception ends the loop and fails what it holds, rather than the process;
// generate() then refuses new requests.
void Model::run() {
    try {
        while (step()) {
            publish_stats();
        }
    } catch (const std::exception& error) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        const bool memory = dynamic_cast<const std::bad_alloc*>(&error) != nullptr;
        fail_all(engine_error(memory ? ERR_OUT_OF_MEMORY : ERR_INTERNAL,
                              std::string("llama_cpp: the model's decode loop stopped: ") + error.what()));
    }
}

// One round of continuous batching: hand arrived requests to free slots, then decode one batch holding the
// pending token of every generating slot and as much prompt as fits, then sample for every slot that got logits.
bool Model::step() {
    std::vector<GenerationRequest*> arrived;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        const auto busy = [&] {
            return std::any_of(slots_.begin(), slots_.end(), [](const auto& slot) { return slot->request; });
        };
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || busy(); });
        if (stopping_) {
            return false;
        }
        size_t free_slots = std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return !s->request; });
        while (!queue_.empty() && arrived.size() < free_slots) {
            arrived.push_back(queue_.front());
            queue_.pop_front();
        }
        queued_ = static_cast<int32_t>(queue_.size());
    }
    for (GenerationRequest* request : arrived) {
        // The free slot whose cached tokens share the longest prefix with the prompt, when that prefix is a
        // real part of what the slot holds; else the least recently used. Without the second condition two
        // prompts that share only the chat template's header would evict each other's cache in turn
        // (llama.cpp's server has the same rule: --slot-prompt-similarity 0.1).
        Slot* reuse = nullptr;
        Slot* oldest = nullptr;
        size_t best_shared = 0;
        for (auto& slot : slots_) {
            if (slot->request != nullptr) {
                continue;
            }
            const auto mismatch =
                std::mismatch(slot->cached.begin(), slot->cached.end(), request->prompt.begin(), request->prompt.end());
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
    const auto add = [&](llama_token token, const Slot& slot, bool output) {
        const int32_t i = batch_.n_tokens++;
        batch_.token[i] = token;
        batch_.pos[i] = static_cast<llama_pos>(slot.cached.size());
        batch_.n_seq_id[i] = 1;
        batch_.seq_id[i][0] = slot.seq;
        batch_.logits[i] = output;
    };
    for (auto& slot : slots_) {
        slot->output = -1;
        if (slot->generating()) {
            slot->output = batch_.n_tokens;
            add(slot->next, *slot, true);
            slot->cached.push_back(slot->next);
        }
    }
    for (auto& slot : slots_) {
        if (!slot->prompting() || batch_.n_tokens == batch_capacity_) {
            continue;
        }
        // Between prompt batches the host may cancel a request that has not produced a token yet.
        if (slot->emitter->poll() == TokenEmitter::Outcome::Refused) {
            finish(*slot, ENGINE_FINISH_CANCELLED);
            continue;
        }
        const std::vector<llama_token>& prompt = slot->request->prompt;
        const size_t take =
            std::min(prompt.size() - slot->prompt_done, static_cast<size_t>(batch_capacity_ - batch_.n_tokens));
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
    const int32_t status = lib.llama_decode(ctx_, batch_);
    if (status != 0) {
        const std::string said = log.text();
        const EngineError error = engine_error(
            ERR_INTERNAL, "llama_decode failed (" + std::to_string(status) + ")" + (said.empty() ? "" : ": " + said));
        for (auto& slot : slots_) {
            if (slot->request != nullptr) {
                fail(*slot, error);
            }
        }
        return true;
    }
    for (auto& slot : slots_) {
        if (slot->output < 0) {
            continue;
        }
        const float* logits = lib.llama_get_logits_ith(ctx_, slot->output);
        if (logits == nullptr) {
            fail(*slot, engine_error(ERR_INTERNAL, "llama.cpp gave no logits for the request: " + log.text()));
            continue;
        }
        take_token(*slot, logits);
    }
    return true;
}

void Model::publish_stats() {
    int32_t running = 0;
    uint64_t kv_used = 0;
    for (const auto& slot : slots_) {
        if (slot->request != nullptr) {
            running += 1;
            kv_used += slot->cached.size();
        }
    }
    running_ = running;
    kv_used_ = kv_used;
}

ModelStats Model::stats() const {
    ModelStats stats;
    stats.running = running_;
    stats.waiting = queued_;
    stats.kv_used = kv_used_;
    stats.kv_total = static_cast<uint64_t>(n_ctx_request_) * slots_.size();
    return stats;
}

void Model::assign(Slot& slot, GenerationRequest* request) {
    // Keep the K/V of the prefix the prompt shares with what the sequence holds; the prompt's last token is
    // decoded again in any case, for its logits.
    const size_t shared = static_cast<size_t>(
        std::mismatch(slot.cached.begin(), slot.cached.end(), request->prompt.begin(), request->prompt.end()).first -
        slot.cached.begin());
    size_t keep = std::min(shared, request->prompt.size() - 1);
    llama_memory_t memory = lib.llama_get_memory(ctx_);
    if (!lib.llama_memory_seq_rm(memory, slot.seq, static_cast<llama_pos>(keep), -1)) {
        lib.llama_memory_seq_rm(memory, slot.seq, -1, -1);
        keep = 0;
    }
    slot.cached.resize(keep);
    slot.prompt_done = keep;
    slot.request = request;
    slot.sampler.emplace(request->sampling);
    slot.emitter.emplace(request->stops, request->on_token, request->user_data);
}

void Model::take_token(Slot& slot, const float* logits_row) {
    GenerationRequest& request = *slot.request;
    float logprob = 0.0f;
    // The row is llama.cpp's output buffer, rewritten by the next decode; the penalties may edit it in place.
    const llama_token token =
        slot.sampler->sample(const_cast<float*>(logits_row), n_vocab_, request.logprobs ? &logprob : nullptr);
    slot.sampler->accept(token);
    ++request.completion_tokens;

    TokenEmitter::Outcome outcome;
    int32_t reason = ENGINE_FINISH_STOP;
    if (!request.ignore_eos && lib.llama_vocab_is_eog(vocab_, token)) {
        outcome = slot.emitter->flush();  // the end-of-generation token itself is counted, not emitted
    } else {
        char piece[128];
        std::string long_piece;
        const char* text = piece;
        int32_t length = lib.llama_token_to_piece(vocab_, token, piece, sizeof piece, 0, false);
        if (length < 0) {
            long_piece.resize(static_cast<size_t>(-length));
            length = lib.llama_token_to_piece(vocab_, token, long_piece.data(), -length, 0, false);
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

void Model::finish(Slot& slot, int32_t reason) {
    GenerationRequest* request = slot.request;
    slot.request = nullptr;
    slot.sampler.reset();
    slot.emitter.reset();
    slot.last_used = ++clock_;
    std::lock_guard<std::mutex> lock(mutex_);
    request->finish_reason = reason;
    request->done = true;
    request->done_cv.notify_one();
}

void Model::fail(Slot& slot, EngineError error) {
    slot.request->error = std::move(error);
    lib.llama_memory_seq_rm(lib.llama_get_memory(ctx_), slot.seq, -1, -1);
    slot.cached.clear();
    finish(slot, ENGINE_FINISH_STOP);
}
