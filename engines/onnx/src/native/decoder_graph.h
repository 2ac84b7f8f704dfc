// A decoder-only ONNX graph with a KV cache, in the layout ONNX Runtime GenAI's model builder and Optimum export:
// input_ids, attention_mask, (position_ids,) past_key_values.N.key/value in; logits, present.N.key/value out.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "ort_runtime.h"

// One sequence's cache: the present tensors of its last step, fed back as the next step's past.
struct KvCache {
    std::vector<OrtValue*> tensors;  // key and value of each layer, in the graph's input order
    int64_t length = 0;              // positions it holds
};

class DecoderGraph {
public:
    // Throws EngineError: the runtime's code for a graph it cannot load, ERR_UNSUPPORTED naming what does not
    // fit the layout above.
    DecoderGraph(const OrtRuntime& runtime, const std::filesystem::path& file, int32_t n_threads, int32_t device_index);
    ~DecoderGraph();
    DecoderGraph(const DecoderGraph&) = delete;
    DecoderGraph& operator=(const DecoderGraph&) = delete;

    int32_t layers() const { return layers_; }
    int64_t kv_heads() const { return kv_heads_; }
    int64_t head_dim() const { return head_dim_; }
    int32_t vocab_size() const { return vocab_size_; }

    KvCache empty_cache() const;
    void release(KvCache& cache) const;

    // Runs `n` tokens at the positions after the cache's, extends the cache with them and leaves the logits of
    // the last one in `logits` (vocab_size floats). Safe to call from several threads, each with its own cache
    // (under DirectML their Runs take turns).
    void step(const int32_t* tokens, size_t n, KvCache& cache, std::vector<float>& logits) const;

private:
    enum class Input { InputIds, AttentionMask, PositionIds, Past };

    const OrtRuntime& runtime_;
    OrtSession* session_ = nullptr;
    OrtMemoryInfo* cpu_ = nullptr;           // the step's inputs and the logits
    OrtMemoryInfo* cache_memory_ = nullptr;  // the presents: the execution provider's own memory
    mutable std::mutex run_mutex_;           // held around a step's Run where the provider takes one at a time
    std::vector<std::string> input_names_;
    std::vector<Input> input_kinds_;
    std::vector<std::string> output_names_;  // logits, then present.N.key/value in the order of the pasts
    ONNXTensorElementDataType kv_type_ = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    ONNXTensorElementDataType logits_type_ = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    int32_t layers_ = 0;
    int64_t kv_heads_ = 0;
    int64_t head_dim_ = 0;
    int32_t vocab_size_ = 0;
};
