// Loading a model and freeing it: llama.cpp's parameters, the model and its context, the CPU thread pool, the
// warm-up and the memory the loaded model took.
#include <algorithm>
#include <cstdio>

#include "ggml-cpu.h"  // the thread pool types; its functions come from the CPU backend
#include "gguf_summary.h"
#include "llama_library.h"
#include "model.h"
#include "slot.h"

namespace {

std::string mib(uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return text;
}

EngineError over_budget(uint64_t bytes, uint64_t budget_bytes) {
    return engine_error(ERR_OUT_OF_MEMORY, "the model needs " + mib(bytes) +
                                               " (weights, KV cache, compute buffers) but its budget is " +
                                               mib(budget_bytes));
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

llama_model_params model_params(const Runtime& runtime, const LoadProgress& progress) {
    llama_model_params params = lib.llama_model_default_params();
    params.devices = const_cast<ggml_backend_dev_t*>(runtime.devices.data());
    params.n_gpu_layers = runtime.on_cpu ? 0 : -1;  // all layers on the GPU
    if (progress.callback != nullptr) {             // else llama.cpp's own, which prints dots into the log
        params.progress_callback = [](float fraction, void* user_data) {
            (*static_cast<const LoadProgress*>(user_data))(fraction, "weights");
            return true;  // go on
        };
        params.progress_callback_user_data = const_cast<LoadProgress*>(&progress);
    }
    return params;
}

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

// The shape the settings give the model and the memory it will take, from the GGUF's metadata alone.
EngineError plan(const LoadSettings& settings, const Runtime& runtime, Shape* shape, Footprint* estimated) {
    GgufSummary gguf;
    if (EngineError error = read_gguf(settings.path, &gguf)) {
        return error;
    }
    if (EngineError error = resolve_shape(settings, gguf.n_ctx_train, shape)) {
        return error;
    }
    *estimated = footprint(gguf, *shape, context_params(runtime, *shape).n_ubatch);
    return {};
}

// Both or neither: a context that cannot be made frees the model.
EngineError create_model_and_context(const LoadSettings& settings, const Runtime& runtime, const Shape& shape,
                                     const LogCapture& log, llama_model** model, llama_context** ctx) {
    *model = lib.llama_model_load_from_file(settings.path.c_str(), model_params(runtime, settings.progress));
    if (*model == nullptr) {
        return load_failure(settings.path, log);
    }
    settings.progress(0.0f, "context");
    *ctx = lib.llama_init_from_model(*model, context_params(runtime, shape));
    if (*ctx == nullptr) {
        lib.llama_model_free(*model);
        return context_failure("llama.cpp could not create a context for the model", log);
    }
    return {};
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

// The pool the context now runs on, for the model to free; NULL where the CPU backend offers none, and the
// context keeps ggml's per-decode threads.
ggml_threadpool* attach_threadpool(llama_context* ctx, int32_t n_threads) {
    const ThreadpoolFunctions threadpool = threadpool_functions();
    if (threadpool.create == nullptr) {
        return nullptr;
    }
    ggml_threadpool_params params = lib.ggml_threadpool_params_default(n_threads);
    ggml_threadpool* pool = threadpool.create(&params);
    if (pool != nullptr) {
        lib.llama_attach_threadpool(ctx, pool, nullptr);
    }
    return pool;
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

// On a GPU, what the device lost across the load and the first decode (weights, KV cache, compute buffers and
// the backend's own workspace), unless another process freed memory meanwhile. On `cpu` the weights as loaded,
// the KV cache and compute buffers as llama.cpp sizes them: they are host memory, where the loss cannot be told
// apart from the rest of the system's.
uint64_t memory_taken(ggml_backend_dev_t device, uint64_t free_before, const llama_model* model,
                      const Footprint& estimated) {
    const uint64_t free_after = device != nullptr ? device_free_bytes(device) : 0;
    if (device != nullptr && free_before > free_after) {
        return free_before - free_after;
    }
    if (device != nullptr) {
        return estimated.total();
    }
    return lib.llama_model_size(model) + estimated.kv + estimated.compute;
}

}  // namespace

EngineError Model::estimate(const LoadSettings& settings, const Runtime& runtime, uint64_t* bytes) {
    Shape shape;
    Footprint estimated;
    if (EngineError error = plan(settings, runtime, &shape, &estimated)) {
        return error;
    }
    *bytes = estimated.total();
    return {};
}

EngineError Model::load(const LoadSettings& settings, const Runtime& runtime, uint64_t budget_bytes,
                        std::unique_ptr<Model>* out) {
    Shape shape;
    Footprint estimated;
    if (EngineError error = plan(settings, runtime, &shape, &estimated)) {
        return error;
    }
    if (budget_bytes > 0 && estimated.total() > budget_bytes) {
        return over_budget(estimated.total(), budget_bytes);
    }

    ggml_backend_dev_t device = runtime.on_cpu ? nullptr : runtime.devices.front();
    const uint64_t free_before = device != nullptr ? device_free_bytes(device) : 0;
    LogCapture log;
    llama_model* model = nullptr;
    llama_context* ctx = nullptr;
    if (EngineError error = create_model_and_context(settings, runtime, shape, log, &model, &ctx)) {
        return error;
    }
    const int32_t n_ctx_request = std::min<int32_t>(shape.n_ctx_request, lib.llama_n_ctx_seq(ctx));
    out->reset(new Model(model, ctx, n_ctx_request, shape.n_parallel));
    Model& loaded = **out;
    loaded.embedder_ = std::make_unique<Embedder>(model, runtime.n_threads, n_ctx_request);
    loaded.threadpool_ = attach_threadpool(ctx, runtime.n_threads);
    if (!warm_up(ctx, loaded.vocab_)) {
        out->reset();
        return context_failure("llama.cpp could not run the model", log);
    }
    loaded.memory_bytes_ = memory_taken(device, free_before, model, estimated);
    if (budget_bytes > 0 && loaded.memory_bytes_ > budget_bytes) {  // the estimate fell short
        const uint64_t held = loaded.memory_bytes_;
        out->reset();
        return over_budget(held, budget_bytes);
    }
    settings.progress(1.0f, "context");
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
    embedder_.reset();  // its context goes before the model
    lib.llama_batch_free(batch_);
    lib.llama_free(ctx_);
    if (threadpool_ != nullptr) {
        threadpool_functions().destroy(threadpool_);
    }
    lib.llama_model_free(model_);
}
