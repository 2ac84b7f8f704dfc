// What a GGUF's metadata says, read without loading the model, and the memory a model of it takes once loaded
// (README.md, "Memory"): engine_model_estimate_vram answers from this alone, and a load checks it against the
// budget before llama.cpp allocates anything.
#pragma once

#include <cstdint>
#include <string>

#include "errors.h"

// What the estimate needs from a GGUF's metadata.
struct GgufSummary {
    uint64_t weight_bytes = 0;
    int32_t n_ctx_train = 0;
    int64_t n_vocab = 0;
    int64_t n_embd = 0;
    int64_t n_ff = 0;                 // the widest layer's
    int64_t kv_values_per_token = 0;  // K and V values one token leaves in the cache, all layers
};

// Checks that `path` is a whole GGUF file and reads what the estimate needs. llama.cpp answers a missing,
// foreign or truncated file with NULL, so the reasons are found here.
EngineError read_gguf(const std::string& path, GgufSummary* summary);

// How a model's context is laid out: n_parallel sequences of n_ctx_request cells each.
struct Shape {
    int32_t n_ctx_request;
    int32_t n_parallel;
};

// The memory a model takes, in the parts llama.cpp allocates.
struct Footprint {
    uint64_t weights = 0;
    uint64_t kv = 0;
    uint64_t compute = 0;  // compute and output buffers

    uint64_t total() const { return weights + kv + compute; }
};

// The memory a model with this shape takes, as llama.cpp allocates it with micro-batches of `n_ubatch` tokens.
Footprint footprint(const GgufSummary& gguf, const Shape& shape, uint64_t n_ubatch);
