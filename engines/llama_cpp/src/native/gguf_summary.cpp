#include "gguf_summary.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <vector>

#include "gguf.h"
#include "llama_library.h"

namespace {

// Element `i` of a value of integer type `type`; -1 for any other type.
int64_t gguf_element(gguf_type type, const void* data, size_t i) {
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
}

// An integer key, scalar or per-layer array (its largest element); `fallback` when absent.
int64_t gguf_integer(const gguf_context* gguf, const std::string& key, int64_t fallback,
                     std::vector<int64_t>* per_layer = nullptr) {
    const int64_t id = lib.gguf_find_key(gguf, key.c_str());
    if (id < 0) {
        return fallback;
    }
    if (lib.gguf_get_kv_type(gguf, id) != GGUF_TYPE_ARRAY) {
        const int64_t value = gguf_element(lib.gguf_get_kv_type(gguf, id), lib.gguf_get_val_data(gguf, id), 0);
        return value >= 0 ? value : fallback;
    }
    const gguf_type type = lib.gguf_get_arr_type(gguf, id);
    if (type == GGUF_TYPE_STRING || type == GGUF_TYPE_ARRAY) {
        return fallback;
    }
    int64_t largest = fallback;
    for (size_t i = 0; i < lib.gguf_get_arr_n(gguf, id); ++i) {
        const int64_t value = gguf_element(type, lib.gguf_get_arr_data(gguf, id), i);
        largest = i == 0 ? value : std::max(largest, value);
        if (per_layer != nullptr) {
            per_layer->push_back(value);
        }
    }
    return largest;
}

// The reasons llama.cpp would not give for a file it cannot open: missing, not a file, not a GGUF.
EngineError check_file(const std::string& path, const std::filesystem::path& file_path) {
    std::error_code error;
    const auto status = std::filesystem::status(file_path, error);
    if (!std::filesystem::exists(status)) {
        return engine_error(ERR_MODEL_NOT_FOUND, "model file not found: " + path);
    }
    if (!std::filesystem::is_regular_file(status)) {
        return engine_error(ERR_MODEL_NOT_FOUND, "not a model file: " + path);
    }
    std::ifstream file(file_path, std::ios::binary);
    char magic[4] = {};
    if (!file) {
        return engine_error(ERR_MODEL_NOT_FOUND, "cannot open model file " + path + ": " + std::strerror(errno));
    }
    if (!file.read(magic, sizeof magic) || std::memcmp(magic, "GGUF", sizeof magic) != 0) {
        return engine_error(ERR_MODEL_CORRUPT, path + " is not a GGUF file (it does not start with 'GGUF')");
    }
    return {};
}

// Sums the weights. The header can be whole while the tensor data is cut short, which llama.cpp would only
// find part-way through the load.
EngineError read_tensors(const gguf_context* gguf, const std::string& path, const std::filesystem::path& file_path,
                         GgufSummary* summary) {
    uint64_t data_end = 0;
    for (int64_t i = 0; i < lib.gguf_get_n_tensors(gguf); ++i) {
        summary->weight_bytes += lib.gguf_get_tensor_size(gguf, i);
        data_end =
            std::max<uint64_t>(data_end, lib.gguf_get_tensor_offset(gguf, i) + lib.gguf_get_tensor_size(gguf, i));
    }
    std::error_code error;
    const uint64_t file_size = std::filesystem::file_size(file_path, error);
    const uint64_t needed = lib.gguf_get_data_offset(gguf) + data_end;
    if (file_size < needed) {
        return engine_error(ERR_MODEL_CORRUPT, path + " is truncated: its tensors need " + std::to_string(needed) +
                                                   " bytes, the file has " + std::to_string(file_size));
    }
    return {};
}

// The architecture's hyperparameters, with llama.cpp's defaults where a key is absent.
void read_hyperparameters(const gguf_context* gguf, GgufSummary* summary) {
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
}

// The summary from the file itself, through llama.cpp's GGUF reader.
EngineError read_header(const std::string& path, const std::filesystem::path& file_path, GgufSummary* summary) {
    LogCapture log;
    gguf_context* gguf = lib.gguf_init_from_file(path.c_str(), {/*no_alloc=*/true, /*ctx=*/nullptr});
    if (gguf == nullptr) {
        return engine_error(ERR_MODEL_CORRUPT, path + " is not a readable GGUF file: " + log.text());
    }
    EngineError error = read_tensors(gguf, path, file_path, summary);
    if (!error) {
        read_hyperparameters(gguf, summary);
    }
    lib.gguf_free(gguf);
    return error;
}

// The file as it was when its summary was read: the same path, size and modification time are the same file.
struct FileVersion {
    uintmax_t size = 0;
    std::filesystem::file_time_type modified;
    bool operator==(const FileVersion& other) const { return size == other.size && modified == other.modified; }
};

// Summaries read before, by path: a load right after its estimate (the host asks for both) parses the header
// once (llama.cpp's reader parses every vocabulary string: about 0.2 s for 128k tokens on a slow CPU).
struct SummaryCache {
    std::mutex mutex;
    std::map<std::string, std::pair<FileVersion, GgufSummary>> by_path;
};

SummaryCache& summary_cache() {
    static SummaryCache cache;
    return cache;
}

}  // namespace

EngineError read_gguf(const std::string& path, GgufSummary* summary) {
    const std::filesystem::path file_path = std::filesystem::u8path(path);  // UTF-8 on every platform
    if (EngineError error = check_file(path, file_path)) {
        return error;
    }
    std::error_code size_failed;
    std::error_code time_failed;
    const FileVersion version{std::filesystem::file_size(file_path, size_failed),
                              std::filesystem::last_write_time(file_path, time_failed)};
    const bool known_version = !size_failed && !time_failed;
    SummaryCache& cache = summary_cache();
    {
        std::lock_guard<std::mutex> lock(cache.mutex);
        auto found = cache.by_path.find(path);
        if (known_version && found != cache.by_path.end() && found->second.first == version) {
            *summary = found->second.second;
            return {};
        }
    }
    if (EngineError error = read_header(path, file_path, summary)) {
        return error;
    }
    if (known_version) {
        std::lock_guard<std::mutex> lock(cache.mutex);
        cache.by_path[path] = {version, *summary};
    }
    return {};
}

// Each sequence's context is padded to 256 cells; the KV cache is F16; the compute buffer holds a micro-batch's
// activations (at most 3 floats per feed-forward and 4 per embedding value, measured), its attention mask (F16,
// micro-batch x context) and the logits rows, which the output buffer holds once more.
Footprint footprint(const GgufSummary& gguf, const Shape& shape, uint64_t n_ubatch) {
    const uint64_t n_ctx_seq = (static_cast<uint64_t>(shape.n_ctx_request) + 255) / 256 * 256;
    Footprint bytes;
    bytes.weights = gguf.weight_bytes;
    bytes.kv = n_ctx_seq * shape.n_parallel * gguf.kv_values_per_token * 2;
    bytes.compute = n_ubatch * (3 * gguf.n_ff + 4 * gguf.n_embd) * 4 + n_ubatch * n_ctx_seq * 2 +
                    2 * static_cast<uint64_t>(shape.n_parallel) * gguf.n_vocab * 4;
    return bytes;
}
