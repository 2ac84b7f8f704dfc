// What a model folder says about its model, read before (and without) opening the graph: genai_config.json as
// ONNX Runtime GenAI's model builder writes it, or else config.json as Optimum and Hugging Face write it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "json.h"

struct ModelFolder {
    std::filesystem::path folder;
    std::filesystem::path graph_file;  // model.onnx, or genai_config.json's decoder.filename
    int32_t trained_context = 0;       // 0 when neither file says
    std::vector<int32_t> eos_tokens;
    int32_t layers = 0;
    int32_t kv_heads = 0;
    int32_t head_dim = 0;
    int32_t vocab_size = 0;
    uint64_t weights_bytes = 0;  // the graph file and its external data files
};

// `path` is the folder or its graph file. Throws EngineError: ERR_MODEL_NOT_FOUND when the folder or a file it
// needs is missing, ERR_MODEL_CORRUPT when a configuration file is not JSON.
ModelFolder read_model_folder(const std::string& path);

// The memory a load takes: the weights, `n_parallel` KV caches of `context` positions, twice (4-byte elements,
// which covers float16 caches too) and the logits of a prompt chunk per sequence.
uint64_t estimate_model_bytes(const ModelFolder& model, int32_t context, int32_t n_parallel);

// Prompt tokens run through the graph at once: bounds the logits a step returns (chunk x vocabulary floats).
constexpr int32_t k_prompt_chunk = 128;

// Reads a whole file; throws EngineError(ERR_MODEL_NOT_FOUND) naming it when it cannot.
std::string read_file(const std::filesystem::path& path);
// Reads a JSON file; throws EngineError: ERR_MODEL_NOT_FOUND as read_file, ERR_MODEL_CORRUPT when it is not JSON.
JsonValue read_json_file(const std::filesystem::path& path);
