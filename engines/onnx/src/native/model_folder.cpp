#include "model_folder.h"

#include <fstream>
#include <sstream>
#include <system_error>

#include "errors.h"
#include "json.h"

namespace fs = std::filesystem;

namespace {

int32_t integer(const JsonValue& value) {
    return value.is_number() ? static_cast<int32_t>(value.as_number()) : 0;
}

std::vector<int32_t> integers(const JsonValue& value) {
    if (value.is_number()) {
        return {integer(value)};
    }
    std::vector<int32_t> out;
    for (const JsonValue& item : value.items()) {
        out.push_back(integer(item));
    }
    return out;
}

uint64_t size_or_zero(const fs::path& path) {
    std::error_code error;
    const auto size = fs::file_size(path, error);
    return error ? 0 : static_cast<uint64_t>(size);
}

}  // namespace

std::string read_file(const fs::path& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw EngineError(ERR_MODEL_NOT_FOUND, "cannot open " + path.u8string());
    }
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

JsonValue read_json_file(const fs::path& path) {
    const std::string text = read_file(path);
    try {
        return parse_json(text);
    } catch (const std::runtime_error& error) {
        throw EngineError(ERR_MODEL_CORRUPT, path.filename().u8string() + " is not valid JSON: " + error.what());
    }
}

ModelFolder read_model_folder(const std::string& path) {
    ModelFolder model;
    std::error_code error;
    // The host's paths are UTF-8; a narrow path on Windows would be read in the ANSI code page.
    const fs::path given = fs::u8path(path);
    if (!fs::exists(given, error)) {
        throw EngineError(ERR_MODEL_NOT_FOUND, "model path does not exist: " + path);
    }
    const bool is_folder = fs::is_directory(given, error);
    model.folder = is_folder ? given : given.parent_path();
    model.graph_file = is_folder ? model.folder / "model.onnx" : given;

    const fs::path genai = model.folder / "genai_config.json";
    const fs::path config = model.folder / "config.json";
    if (fs::exists(genai, error)) {
        const JsonValue document = read_json_file(genai);
        const JsonValue& m = document["model"];
        const JsonValue& decoder = m["decoder"];
        if (decoder["filename"].is_string() && is_folder) {
            model.graph_file = model.folder / fs::u8path(decoder["filename"].as_string());
        }
        model.trained_context = integer(m["context_length"]);
        model.eos_tokens = integers(m["eos_token_id"]);
        model.layers = integer(decoder["num_hidden_layers"]);
        model.kv_heads = integer(decoder["num_key_value_heads"]);
        model.head_dim = integer(decoder["head_size"]);
        model.vocab_size = integer(m["vocab_size"]);
    } else if (fs::exists(config, error)) {
        const JsonValue document = read_json_file(config);
        model.trained_context = integer(document["max_position_embeddings"]);
        model.eos_tokens = integers(document["eos_token_id"]);
        model.layers = integer(document["num_hidden_layers"]);
        const int32_t heads = integer(document["num_attention_heads"]);
        model.kv_heads = document["num_key_value_heads"].is_number() ? integer(document["num_key_value_heads"]) : heads;
        model.head_dim = document["head_dim"].is_number() ? integer(document["head_dim"])
                         : heads > 0                      ? integer(document["hidden_size"]) / heads
                                                          : 0;
        model.vocab_size = integer(document["vocab_size"]);
    } else {
        throw EngineError(ERR_MODEL_NOT_FOUND,
                          model.folder.u8string() + " has neither genai_config.json nor config.json");
    }
    if (!fs::exists(model.graph_file, error)) {
        throw EngineError(ERR_MODEL_NOT_FOUND,
                          model.folder.u8string() + " has no " + model.graph_file.filename().u8string());
    }
    if (!fs::exists(model.folder / "tokenizer.json", error)) {
        throw EngineError(ERR_MODEL_NOT_FOUND, model.folder.u8string() + " has no tokenizer.json");
    }
    // External data sits beside the graph under names of the exporter's choosing (model.onnx.data,
    // model.onnx_data): every file that starts with the graph's name.
    const std::string stem = model.graph_file.filename().u8string();
    for (const auto& entry : fs::directory_iterator(model.folder, error)) {
        if (entry.is_regular_file() && entry.path().filename().u8string().rfind(stem, 0) == 0) {
            model.weights_bytes += size_or_zero(entry.path());
        }
    }
    return model;
}

uint64_t estimate_model_bytes(const ModelFolder& model, int32_t context, int32_t n_parallel) {
    const uint64_t parallel = static_cast<uint64_t>(n_parallel);
    // Twice the caches: a step holds its past and the present it makes, one position longer, at once.
    const uint64_t kv = 2 * parallel * static_cast<uint64_t>(context) * static_cast<uint64_t>(model.layers) * 2 *
                        static_cast<uint64_t>(model.kv_heads) * static_cast<uint64_t>(model.head_dim) * 4;
    const uint64_t logits = parallel * k_prompt_chunk * static_cast<uint64_t>(model.vocab_size) * 4;
    return model.weights_bytes + kv + logits;
}
