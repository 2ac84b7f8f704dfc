// A model's embeddings (engine_embed): a llama.cpp context of their own beside the decode loop's, made at the
// first request and grown to the longest input seen, so that a model never asked for embeddings pays nothing.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "errors.h"
#include "llama.h"

class Embedder {
public:
    // `max_tokens`: the longest input it embeds, the model's context per request.
    Embedder(llama_model* model, int32_t n_threads, int32_t max_tokens);
    ~Embedder();
    Embedder(const Embedder&) = delete;
    Embedder& operator=(const Embedder&) = delete;

    // Floats in each embedding.
    int32_t length() const { return length_; }
    // [any thread; one call at a time, beside the decode loop] Each input's embedding, pooled as the model's
    // metadata says (mean where it says nothing: a generative model), into consecutive rows of `out`.
    EngineError embed(const std::vector<std::vector<llama_token>>& inputs, float* out);

private:
    EngineError make_context(int32_t n_tokens);

    llama_model* model_;
    int32_t n_threads_;
    int32_t max_tokens_;
    int32_t length_;
    std::mutex mutex_;
    llama_context* ctx_ = nullptr;  // under mutex_
    int32_t n_ctx_ = 0;             // tokens ctx_ holds; under mutex_
};
