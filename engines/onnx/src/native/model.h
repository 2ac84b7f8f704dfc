// A loaded model: its graph, tokenizer and limits, and the generations running on it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "decoder_graph.h"
#include "engine_api.h"
#include "model_folder.h"
#include "tokenizer.h"

struct ModelOptions {
    int32_t context_length = 0;  // 0 = the model's trained length
    int32_t n_parallel = 0;      // 0 = 4
    int32_t n_threads = 0;       // 0 = ONNX Runtime's choice
    int32_t device_index = 0;
};

class Model {
public:
    // Throws EngineError.
    Model(const OrtRuntime& runtime, const ModelFolder& folder, const ModelOptions& options);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    int32_t context_length() const { return context_length_; }
    uint64_t memory_bytes() const { return memory_bytes_; }

    // engine_generate_stream for this model: each generation runs on its caller's thread in one of the model's
    // n_parallel sequences (the graph is safe to run from several threads); the rest wait for a free one. A
    // sequence keeps its cache when its generation ends, and a later prompt that starts with the tokens it holds
    // (a conversation's next turn) runs only the rest. Throws EngineError.
    void generate(const EngineGenerateParams& params, EngineTokenCallback on_token, void* user_data,
                  EngineGenerateResult& result) const;

    void stats(EngineModelStats& stats) const;

private:
    // A KV cache and the tokens it holds, kept between generations.
    struct Sequence {
        KvCache cache;
        std::vector<int32_t> tokens;
        bool busy = false;
    };

    // Waits for a free sequence and takes the one whose tokens are the longest prefix of `prompt` (an empty one's
    // are), else any; counts the wait in `waiting_`.
    Sequence& acquire(const std::vector<int32_t>& prompt) const;
    void release(Sequence& sequence) const;
    void run(const EngineGenerateParams& params, const std::vector<int32_t>& prompt, Sequence& sequence,
             EngineTokenCallback on_token, void* user_data, EngineGenerateResult& result) const;

    std::unique_ptr<DecoderGraph> graph_;
    Tokenizer tokenizer_;
    std::vector<int32_t> eos_tokens_;
    int32_t context_length_;
    int32_t n_parallel_;
    uint64_t memory_bytes_;

    mutable std::mutex sequences_mutex_;  // guards the sequences' `busy`; a busy one's cache is its holder's
    mutable std::condition_variable sequence_freed_;
    mutable std::vector<Sequence> sequences_;
    mutable std::atomic<int32_t> waiting_{0};
    mutable std::atomic<int32_t> running_{0};
    mutable std::atomic<uint64_t> cells_used_{0};
};

// The defaults a model gets when the host does not say: four sequences at once.
constexpr int32_t k_default_parallel = 4;
