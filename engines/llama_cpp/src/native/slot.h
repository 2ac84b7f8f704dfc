// One of a model's n_parallel sequences and the request it serves. Model's members that use it are defined in
// more than one file (model_load.cpp, scheduler.cpp); model.h only declares it, which keeps the token emitter out
// of engine.cpp.
#pragma once

#include <optional>
#include <vector>

#include "model.h"
#include "sampler.h"
#include "token_emitter.h"

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
