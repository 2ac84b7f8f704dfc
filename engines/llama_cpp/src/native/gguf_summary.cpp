#include "gguf_summary.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "gguf.h"
#include "llama_library.h"

namespace {

// GGUF's value types (gguf.h's gguf_type), and the size of each scalar one; 0 for strings and arrays.
constexpr size_t SCALAR_SIZES[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
// Bounds far above any real model's, so that a crafted header cannot make the plugin spend minutes or gigabytes.
constexpr uint64_t MAX_KEYS = 65536;
constexpr uint64_t MAX_TENSORS = 1000000;
constexpr uint64_t MAX_STRING_BYTES = 16u << 20;
// Integer arrays longer than this (token types, scores) are stepped over: per-layer lists are shorter. What is
// kept of a header is bounded too: keys longer than any real one are not kept, nor integers past a budget.
constexpr uint64_t LONGEST_KEPT_LIST = 4096;
constexpr size_t LONGEST_KEPT_KEY = 256;
constexpr uint64_t KEPT_INTEGERS = 1u << 20;

// What a key holds, as far as the summary needs: an integer, a list of integers, a string, or an array's length.
struct Value {
    gguf_type type = GGUF_TYPE_COUNT;
    std::vector<int64_t> integers;  // one for a scalar, the elements of a kept integer array
    std::string text;
    uint64_t array_length = 0;
};

// Sequential reads of a file, a megabyte at a time. Every read is checked against the file's size: a header
// that runs past it is a truncated file, and nothing is allocated for a length before it is checked.
class HeaderReader {
public:
    HeaderReader(std::ifstream& file, uint64_t size) : file_(file), size_(size) {}

    uint64_t position() const { return start_ + at_; }
    const std::string& failure() const { return failure_; }

    bool bytes(void* out, size_t n) {
        if (!ensure(n)) {
            return false;
        }
        std::memcpy(out, buffer_.data() + at_, n);
        at_ += n;
        return true;
    }

    template <typename T>
    bool scalar(T* out) {
        return bytes(out, sizeof(T));  // little-endian, as GGUF is and every platform the plugin is built for
    }

    bool skip(uint64_t n) {
        if (n > size_ - position()) {
            return fail("it is truncated inside its GGUF header");
        }
        if (n <= buffer_.size() - at_) {
            at_ += static_cast<size_t>(n);
        } else {
            start_ = position() + n;
            buffer_.clear();
            at_ = 0;
        }
        return true;
    }

    // A length or count, which must fit what is left of the file (one byte an element at least).
    bool count(uint64_t* n) {
        if (!scalar(n)) {
            return false;
        }
        return *n <= size_ - position() || fail("its GGUF header counts more than the file holds");
    }

    bool string(std::string* out) {
        uint64_t n = 0;
        if (!count(&n)) {
            return false;
        }
        if (n > MAX_STRING_BYTES) {
            return fail("a string of " + std::to_string(n) + " bytes");
        }
        if (out == nullptr) {
            return skip(n);
        }
        out->resize(static_cast<size_t>(n));
        return n == 0 || bytes(&(*out)[0], static_cast<size_t>(n));
    }

    bool fail(const std::string& why) {
        if (failure_.empty()) {
            failure_ = why;
        }
        return false;
    }

private:
    bool ensure(size_t n) {
        if (n <= buffer_.size() - at_) {
            return true;
        }
        if (n > size_ - position()) {
            return fail("it is truncated inside its GGUF header");
        }
        std::vector<uint8_t> next(std::max<uint64_t>(n, std::min<uint64_t>(CHUNK, size_ - position())));
        const size_t kept = buffer_.size() - at_;
        std::memcpy(next.data(), buffer_.data() + at_, kept);
        const std::streamsize wanted = static_cast<std::streamsize>(next.size() - kept);
        file_.clear();
        file_.seekg(static_cast<std::streamoff>(position() + kept));
        if (!file_.read(reinterpret_cast<char*>(next.data() + kept), wanted) || file_.gcount() != wanted) {
            return fail("the file could not be read to the end of its GGUF header");
        }
        start_ = position();
        buffer_.swap(next);
        at_ = 0;
        return true;
    }

    static constexpr uint64_t CHUNK = 1u << 20;
    std::ifstream& file_;
    uint64_t size_;
    std::vector<uint8_t> buffer_;
    uint64_t start_ = 0;  // file offset of buffer_[0]
    size_t at_ = 0;       // read position within buffer_
    std::string failure_;
};

// A little-endian integer of type T at `data`, which need not be aligned.
template <typename T>
int64_t load(const uint8_t* data) {
    T value;
    std::memcpy(&value, data, sizeof value);
    return static_cast<int64_t>(value);
}

// The value of integer type `type` at `data`; -1 for any other type.
int64_t as_integer(gguf_type type, const uint8_t* data) {
    switch (type) {
        case GGUF_TYPE_UINT8:
            return load<uint8_t>(data);
        case GGUF_TYPE_INT8:
            return load<int8_t>(data);
        case GGUF_TYPE_UINT16:
            return load<uint16_t>(data);
        case GGUF_TYPE_INT16:
            return load<int16_t>(data);
        case GGUF_TYPE_UINT32:
            return load<uint32_t>(data);
        case GGUF_TYPE_INT32:
            return load<int32_t>(data);
        case GGUF_TYPE_UINT64:
        case GGUF_TYPE_INT64:
            return load<int64_t>(data);
        default:
            return -1;
    }
}

// A value of the type the file gives: checked as the number it is before it is taken for a gguf_type. A string
// is kept when `keep_text`, integers while `integer_budget` lasts.
bool read_value(HeaderReader& reader, uint32_t file_type, bool keep_text, uint64_t* integer_budget, Value* value) {
    if (file_type >= GGUF_TYPE_COUNT) {
        return reader.fail("a value of type " + std::to_string(file_type));
    }
    const auto type = static_cast<gguf_type>(file_type);
    value->type = type;
    if (type == GGUF_TYPE_STRING) {
        return reader.string(keep_text ? &value->text : nullptr);
    }
    if (type != GGUF_TYPE_ARRAY) {
        uint8_t data[8] = {};
        if (!reader.bytes(data, SCALAR_SIZES[type])) {
            return false;
        }
        value->integers.push_back(as_integer(type, data));
        return true;
    }
    uint32_t element_type = 0;
    if (!reader.scalar(&element_type) || !reader.count(&value->array_length)) {
        return false;
    }
    if (element_type == GGUF_TYPE_STRING) {  // the vocabulary and merges: stepped over, string by string
        for (uint64_t i = 0; i < value->array_length; ++i) {
            if (!reader.string(nullptr)) {
                return false;
            }
        }
        return true;
    }
    if (element_type >= GGUF_TYPE_COUNT || element_type == GGUF_TYPE_ARRAY) {
        return reader.fail("an array of type " + std::to_string(element_type));
    }
    const size_t size = SCALAR_SIZES[element_type];
    if (value->array_length > LONGEST_KEPT_LIST || value->array_length > *integer_budget) {
        return value->array_length <= UINT64_MAX / size ? reader.skip(value->array_length * size)
                                                        : reader.fail("an array larger than the file");
    }
    *integer_budget -= value->array_length;
    for (uint64_t i = 0; i < value->array_length; ++i) {
        uint8_t data[8] = {};
        if (!reader.bytes(data, size)) {
            return false;
        }
        value->integers.push_back(as_integer(static_cast<gguf_type>(element_type), data));
    }
    return true;
}

using Metadata = std::map<std::string, Value>;

// An integer key, scalar or per-layer array (its largest element); `fallback` when absent or not an integer.
int64_t gguf_integer(const Metadata& metadata, const std::string& key, int64_t fallback,
                     std::vector<int64_t>* per_layer = nullptr) {
    const auto found = metadata.find(key);
    if (found == metadata.end() || found->second.integers.empty()) {
        return fallback;
    }
    const Value& value = found->second;
    if (value.type != GGUF_TYPE_ARRAY) {
        return value.integers[0] >= 0 ? value.integers[0] : fallback;
    }
    if (per_layer != nullptr) {
        *per_layer = value.integers;
    }
    return *std::max_element(value.integers.begin(), value.integers.end());
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

// The architecture's hyperparameters, with llama.cpp's defaults where a key is absent.
void read_hyperparameters(const Metadata& metadata, GgufSummary* summary) {
    const auto arch_value = metadata.find("general.architecture");
    const std::string arch =
        arch_value != metadata.end() && arch_value->second.type == GGUF_TYPE_STRING ? arch_value->second.text : "";
    const auto tokens = metadata.find("tokenizer.ggml.tokens");
    summary->n_vocab = gguf_integer(metadata, arch + ".vocab_size",
                                    tokens != metadata.end() ? static_cast<int64_t>(tokens->second.array_length) : 0);
    summary->n_ctx_train =
        static_cast<int32_t>(std::min<int64_t>(gguf_integer(metadata, arch + ".context_length", 0), INT32_MAX));
    summary->n_embd = gguf_integer(metadata, arch + ".embedding_length", 0);
    summary->n_ff = gguf_integer(metadata, arch + ".feed_forward_length", 4 * summary->n_embd);
    const int64_t n_layer = gguf_integer(metadata, arch + ".block_count", 0);
    const int64_t n_head = std::max<int64_t>(1, gguf_integer(metadata, arch + ".attention.head_count", 1));
    std::vector<int64_t> heads_kv;
    const int64_t n_head_kv = gguf_integer(metadata, arch + ".attention.head_count_kv", n_head, &heads_kv);
    const int64_t key_length = gguf_integer(metadata, arch + ".attention.key_length", summary->n_embd / n_head);
    const int64_t value_length = gguf_integer(metadata, arch + ".attention.value_length", summary->n_embd / n_head);
    int64_t kv_heads_all_layers = 0;
    for (int64_t layer = 0; layer < n_layer; ++layer) {
        kv_heads_all_layers += static_cast<size_t>(layer) < heads_kv.size() ? heads_kv[layer] : n_head_kv;
    }
    summary->kv_values_per_token = kv_heads_all_layers * (key_length + value_length);
}

// One tensor's description in the header: its bytes (ggml's row size times its rows), and where they start in
// the tensor data. False, with the reason in `reader`, for a shape or type no tensor can have.
bool read_tensor(HeaderReader& reader, uint64_t* bytes, uint64_t* offset) {
    uint32_t n_dims = 0;
    if (!reader.string(nullptr) || !reader.scalar(&n_dims)) {
        return false;
    }
    if (n_dims == 0 || n_dims > GGML_MAX_DIMS) {
        return reader.fail("a tensor of " + std::to_string(n_dims) + " dimensions");
    }
    uint64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
    for (uint32_t j = 0; j < n_dims; ++j) {
        if (!reader.scalar(&ne[j])) {
            return false;
        }
    }
    uint32_t type = 0;
    if (!reader.scalar(&type) || !reader.scalar(offset)) {
        return false;
    }
    const int64_t block = type < GGML_TYPE_COUNT ? lib.ggml_blck_size(static_cast<ggml_type>(type)) : 0;
    if (block <= 0 || ne[0] % static_cast<uint64_t>(block) != 0) {
        return reader.fail("a tensor of type " + std::to_string(type) + " and width " + std::to_string(ne[0]));
    }
    uint64_t total = lib.ggml_type_size(static_cast<ggml_type>(type));
    const uint64_t factors[GGML_MAX_DIMS] = {ne[0] / static_cast<uint64_t>(block), ne[1], ne[2], ne[3]};
    for (uint64_t factor : factors) {
        if (factor != 0 && total > UINT64_MAX / factor) {
            return reader.fail("a tensor larger than any file");
        }
        total *= factor;
    }
    *bytes = total;
    return true;
}

// The summary from the file's header, read here rather than by llama.cpp's GGUF reader, which decodes every
// string of the vocabulary and merges: 0.1 s of a first estimate for Llama 3's, where stepping over them takes
// a few milliseconds. Checks that the tensor data is all there too: the header can be whole while the data is
// cut short, which llama.cpp would only find part-way through the load.
EngineError read_header(const std::string& path, const std::filesystem::path& file_path, GgufSummary* summary) {
    std::error_code size_error;
    const uint64_t file_size = std::filesystem::file_size(file_path, size_error);
    std::ifstream file(file_path, std::ios::binary);
    if (size_error || !file) {
        return engine_error(ERR_MODEL_NOT_FOUND, "cannot open model file " + path);
    }
    HeaderReader reader(file, file_size);
    const auto unreadable = [&] {
        return engine_error(ERR_MODEL_CORRUPT, path + " is not a readable GGUF file: " + reader.failure());
    };
    char magic[4] = {};
    uint32_t version = 0;
    uint64_t n_tensors = 0;
    uint64_t n_kv = 0;
    if (!reader.bytes(magic, sizeof magic) || !reader.scalar(&version) || !reader.count(&n_tensors) ||
        !reader.count(&n_kv)) {
        return unreadable();
    }
    if (version != 2 && version != 3) {
        reader.fail("GGUF version " + std::to_string(version) + " (2 and 3 are read)");
        return unreadable();
    }
    if (n_tensors > MAX_TENSORS || n_kv > MAX_KEYS) {
        reader.fail(std::to_string(n_tensors) + " tensors and " + std::to_string(n_kv) + " metadata keys");
        return unreadable();
    }
    Metadata metadata;
    uint64_t integer_budget = KEPT_INTEGERS;
    std::string key;
    for (uint64_t i = 0; i < n_kv; ++i) {
        uint32_t type = 0;
        Value value;
        if (!reader.string(&key) || !reader.scalar(&type) ||
            !read_value(reader, type, key == "general.architecture", &integer_budget, &value)) {
            return unreadable();
        }
        if (key.size() <= LONGEST_KEPT_KEY) {
            metadata[key] = std::move(value);
        }
    }
    uint64_t data_end = 0;
    for (uint64_t i = 0; i < n_tensors; ++i) {
        uint64_t bytes = 0;
        uint64_t offset = 0;
        if (!read_tensor(reader, &bytes, &offset)) {
            return unreadable();
        }
        summary->weight_bytes += bytes;
        data_end = std::max(data_end, offset > UINT64_MAX - bytes ? UINT64_MAX : offset + bytes);
    }
    const int64_t alignment = gguf_integer(metadata, "general.alignment", GGUF_DEFAULT_ALIGNMENT);
    if (alignment <= 0) {
        reader.fail("general.alignment " + std::to_string(alignment));
        return unreadable();
    }
    const uint64_t data_offset = (reader.position() + alignment - 1) / alignment * alignment;
    const uint64_t needed = data_end > UINT64_MAX - data_offset ? UINT64_MAX : data_offset + data_end;
    if (needed > file_size) {
        return engine_error(ERR_MODEL_CORRUPT, path + " is truncated: its tensors need " + std::to_string(needed) +
                                                   " bytes, the file has " + std::to_string(file_size));
    }
    read_hyperparameters(metadata, summary);
    return {};
}

// The file as it was when its summary was read: the same path, size and modification time are the same file.
struct FileVersion {
    uintmax_t size = 0;
    std::filesystem::file_time_type modified;
    bool operator==(const FileVersion& other) const { return size == other.size && modified == other.modified; }
};

// Summaries read before, by path: a load right after its estimate (the host asks for both) reads the header
// once.
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
