#include "embedder.h"

#include <algorithm>
#include <string>

#include "llama_library.h"

namespace {

// Contexts grow in these steps: a few sizes serve every input, and a short one does not make a long one.
constexpr int32_t kContextStep = 512;

}  // namespace

Embedder::Embedder(llama_model* model, int32_t n_threads, int32_t max_tokens)
    : model_(model), n_threads_(n_threads), max_tokens_(max_tokens), length_(lib.llama_model_n_embd_out(model)) {}

Embedder::~Embedder() {
    if (ctx_ != nullptr) {
        lib.llama_free(ctx_);
    }
}

// One sequence, decoded whole in one micro-batch: a bidirectional (BERT-like) model must see all its tokens at once.
EngineError Embedder::make_context(int32_t n_tokens) {
    const int32_t n_ctx = std::min(max_tokens_, (n_tokens + kContextStep - 1) / kContextStep * kContextStep);
    if (ctx_ != nullptr) {
        lib.llama_free(ctx_);
        ctx_ = nullptr;
    }
    llama_context_params params = lib.llama_context_default_params();
    params.embeddings = true;
    params.n_ctx = static_cast<uint32_t>(n_ctx);
    params.n_batch = params.n_ctx;
    params.n_ubatch = params.n_ctx;
    params.n_seq_max = 1;
    params.n_threads = n_threads_;
    params.n_threads_batch = n_threads_;
    params.no_perf = true;
    params.pooling_type = LLAMA_POOLING_TYPE_UNSPECIFIED;  // the model's own
    ctx_ = lib.llama_init_from_model(model_, params);
    if (ctx_ != nullptr && lib.llama_pooling_type(ctx_) == LLAMA_POOLING_TYPE_NONE) {
        // A generative model names no pooling: the mean of its token states, as sentence embedders take it.
        lib.llama_free(ctx_);
        params.pooling_type = LLAMA_POOLING_TYPE_MEAN;
        ctx_ = lib.llama_init_from_model(model_, params);
    }
    if (ctx_ == nullptr) {
        return engine_error(ERR_OUT_OF_MEMORY, "llama.cpp could not make a context of " + std::to_string(n_ctx) +
                                                   " tokens for embeddings");
    }
    if (lib.llama_pooling_type(ctx_) == LLAMA_POOLING_TYPE_RANK) {
        return engine_error(ERR_UNSUPPORTED, "the model ranks documents (a reranker): it gives scores, not embeddings");
    }
    n_ctx_ = n_ctx;
    return {};
}

EngineError Embedder::embed(const std::vector<std::vector<llama_token>>& inputs, float* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    int32_t longest = 0;
    for (const auto& tokens : inputs) {
        longest = std::max(longest, static_cast<int32_t>(tokens.size()));
    }
    if (longest > max_tokens_) {
        return engine_error(ERR_CONTEXT_OVERFLOW, "an input is " + std::to_string(longest) +
                                                      " tokens; the model embeds at most " +
                                                      std::to_string(max_tokens_));
    }
    if (ctx_ == nullptr || longest > n_ctx_) {
        if (EngineError error = make_context(longest)) {
            return error;
        }
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
        if (llama_memory_t memory = lib.llama_get_memory(ctx_)) {
            lib.llama_memory_clear(memory, true);
        }
        std::vector<llama_token> tokens = inputs[i];  // llama_batch_get_one takes them mutable
        if (lib.llama_decode(ctx_, lib.llama_batch_get_one(tokens.data(), static_cast<int32_t>(tokens.size()))) != 0) {
            return engine_error(ERR_INTERNAL, "llama.cpp could not run the model on input " + std::to_string(i));
        }
        const float* pooled = lib.llama_get_embeddings_seq(ctx_, 0);
        if (pooled == nullptr) {
            return engine_error(ERR_INTERNAL, "llama.cpp gave no pooled embedding for input " + std::to_string(i));
        }
        std::copy(pooled, pooled + length_, out + i * static_cast<size_t>(length_));
    }
    return {};
}
