#include "decoder_graph.h"

#include <algorithm>
#include <cstring>

#include "errors.h"

namespace {

[[noreturn]] void unsupported(const std::string& what) {
    throw EngineError(ERR_UNSUPPORTED,
                      "the ONNX graph does not have the layout this engine drives (input_ids, attention_mask, "
                      "position_ids and past_key_values.N.key/value in; logits and present.N.key/value out): " +
                          what);
}

struct TensorInfo {
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    std::vector<int64_t> dims;  // -1 for a symbolic dimension
};

template <typename GetTypeInfo>
TensorInfo tensor_info(const OrtRuntime& runtime, GetTypeInfo get, const std::string& name) {
    const OrtApi* api = runtime.api;
    OrtTypeInfo* type_info = nullptr;
    runtime.check(get(&type_info), "reading the graph's inputs and outputs");
    const OrtTensorTypeAndShapeInfo* tensor = nullptr;
    runtime.check(api->CastTypeInfoToTensorInfo(type_info, &tensor), "reading the graph's inputs and outputs");
    TensorInfo info;
    if (tensor == nullptr) {
        api->ReleaseTypeInfo(type_info);
        unsupported("'" + name + "' is not a tensor");
    }
    size_t rank = 0;
    runtime.check(api->GetTensorElementType(tensor, &info.type), "reading a tensor's type");
    runtime.check(api->GetDimensionsCount(tensor, &rank), "reading a tensor's shape");
    info.dims.resize(rank);
    runtime.check(api->GetDimensions(tensor, info.dims.data(), rank), "reading a tensor's shape");
    api->ReleaseTypeInfo(type_info);
    return info;
}

const char* type_name(ONNXTensorElementDataType type) {
    switch (type) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
            return "float32";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
            return "float16";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
            return "bfloat16";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
            return "int64";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
            return "int32";
        default:
            return "another type";
    }
}

float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000 | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: normalise it
        exponent = 113;
        while ((mantissa & 0x400) == 0) {
            mantissa <<= 1;
            --exponent;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3FF) << 13);
    }
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

#if defined(_WIN32)
std::wstring native_path(const std::filesystem::path& file) {
    return file.wstring();
}
#else
std::string native_path(const std::filesystem::path& file) {
    return file.u8string();
}
#endif

}  // namespace

DecoderGraph::DecoderGraph(const OrtRuntime& runtime, const std::filesystem::path& file, int32_t n_threads,
                           int32_t device_index)
    : runtime_(runtime) {
    const OrtApi* api = runtime.api;
    OrtSessionOptions* options = nullptr;
    runtime.check(api->CreateSessionOptions(&options), "creating session options");
    try {
        runtime.check(api->SetIntraOpNumThreads(options, n_threads), "setting the session's threads");
        runtime.check(api->SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL),
                      "setting the graph optimisation level");
        runtime.add_provider(options, device_index);
        runtime.check(api->CreateSession(runtime.env, native_path(file).c_str(), options, &session_),
                      ("loading " + file.filename().u8string()).c_str());
    } catch (...) {
        api->ReleaseSessionOptions(options);
        throw;
    }
    api->ReleaseSessionOptions(options);
    try {
        runtime.check(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &cpu_), "creating memory info");
        cache_memory_ = runtime.create_cache_memory_info(device_index);

        OrtAllocator* allocator = nullptr;
        runtime.check(api->GetAllocatorWithDefaultOptions(&allocator), "getting the default allocator");
        auto take_name = [&](char* name) {
            std::string out(name);
            runtime.check(api->AllocatorFree(allocator, name), "freeing a name");
            return out;
        };

        size_t n_inputs = 0;
        runtime.check(api->SessionGetInputCount(session_, &n_inputs), "counting the graph's inputs");
        std::vector<std::string> pasts;
        for (size_t i = 0; i < n_inputs; ++i) {
            char* raw = nullptr;
            runtime.check(api->SessionGetInputName(session_, i, allocator, &raw), "reading an input's name");
            const std::string name = take_name(raw);
            const TensorInfo info = tensor_info(
                runtime, [&](OrtTypeInfo** out) { return api->SessionGetInputTypeInfo(session_, i, out); }, name);
            input_names_.push_back(name);
            if (name == "input_ids" || name == "attention_mask" || name == "position_ids") {
                if (info.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
                    unsupported("'" + name + "' is " + type_name(info.type) + ", not int64");
                }
                input_kinds_.push_back(name == "input_ids"        ? Input::InputIds
                                       : name == "attention_mask" ? Input::AttentionMask
                                                                  : Input::PositionIds);
                continue;
            }
            if (name.rfind("past_key_values.", 0) != 0) {
                unsupported("it has an input '" + name + "' this engine would not know how to fill");
            }
            if (info.dims.size() != 4 || info.dims[1] <= 0 || info.dims[3] <= 0) {
                unsupported("'" + name +
                            "' is not [batch, kv_heads, past_length, head_dim] with fixed heads and head size");
            }
            if (info.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
                info.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
                unsupported("'" + name + "' is " + type_name(info.type) +
                            " (float32 and float16 caches are supported)");
            }
            kv_type_ = info.type;
            kv_heads_ = info.dims[1];
            head_dim_ = info.dims[3];
            input_kinds_.push_back(Input::Past);
            pasts.push_back(name);
        }
        for (const char* required : {"input_ids", "attention_mask"}) {
            if (std::find(input_names_.begin(), input_names_.end(), required) == input_names_.end()) {
                unsupported(std::string("it has no input '") + required + "'");
            }
        }
        if (pasts.empty() || pasts.size() % 2 != 0) {
            unsupported("it has no past_key_values.N.key/value inputs: a graph without a KV cache");
        }
        layers_ = static_cast<int32_t>(pasts.size() / 2);

        size_t n_outputs = 0;
        runtime.check(api->SessionGetOutputCount(session_, &n_outputs), "counting the graph's outputs");
        std::vector<std::string> outputs;
        for (size_t i = 0; i < n_outputs; ++i) {
            char* raw = nullptr;
            runtime.check(api->SessionGetOutputName(session_, i, allocator, &raw), "reading an output's name");
            const std::string name = take_name(raw);
            if (name == "logits") {
                const TensorInfo info = tensor_info(
                    runtime, [&](OrtTypeInfo** out) { return api->SessionGetOutputTypeInfo(session_, i, out); }, name);
                if (info.dims.size() != 3 || info.dims[2] <= 0) {
                    unsupported("'logits' is not [batch, sequence, vocabulary] with a fixed vocabulary");
                }
                if (info.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
                    info.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
                    unsupported(std::string("'logits' is ") + type_name(info.type) +
                                " (float32 and float16 are supported)");
                }
                logits_type_ = info.type;
                vocab_size_ = static_cast<int32_t>(info.dims[2]);
            }
            outputs.push_back(name);
        }
        if (vocab_size_ == 0) {
            unsupported("it has no output 'logits'");
        }
        output_names_.push_back("logits");
        for (const std::string& past : pasts) {
            const std::string present = "present." + past.substr(std::string("past_key_values.").size());
            if (std::find(outputs.begin(), outputs.end(), present) == outputs.end()) {
                unsupported("it has an input '" + past + "' but no output '" + present + "'");
            }
            output_names_.push_back(present);
        }
    } catch (...) {
        api->ReleaseMemoryInfo(cache_memory_);
        api->ReleaseMemoryInfo(cpu_);
        api->ReleaseSession(session_);
        throw;
    }
}

DecoderGraph::~DecoderGraph() {
    runtime_.api->ReleaseMemoryInfo(cache_memory_);
    runtime_.api->ReleaseMemoryInfo(cpu_);
    runtime_.api->ReleaseSession(session_);
}

KvCache DecoderGraph::empty_cache() const {
    OrtAllocator* allocator = nullptr;
    runtime_.check(runtime_.api->GetAllocatorWithDefaultOptions(&allocator), "getting the default allocator");
    KvCache cache;
    const int64_t shape[4] = {1, kv_heads_, 0, head_dim_};
    for (int32_t i = 0; i < layers_ * 2; ++i) {
        OrtValue* value = nullptr;
        runtime_.check(runtime_.api->CreateTensorAsOrtValue(allocator, shape, 4, kv_type_, &value),
                       "creating an empty cache");
        cache.tensors.push_back(value);
    }
    return cache;
}

void DecoderGraph::release(KvCache& cache) const {
    for (OrtValue* value : cache.tensors) {
        runtime_.api->ReleaseValue(value);
    }
    cache.tensors.clear();
    cache.length = 0;
}

void DecoderGraph::step(const int32_t* tokens, size_t n, KvCache& cache, std::vector<float>& logits) const {
    const OrtApi* api = runtime_.api;
    const auto count = static_cast<int64_t>(n);
    std::vector<int64_t> ids(tokens, tokens + n);
    std::vector<int64_t> mask(static_cast<size_t>(cache.length + count), 1);
    std::vector<int64_t> positions(n);
    for (size_t i = 0; i < n; ++i) {
        positions[i] = cache.length + static_cast<int64_t>(i);
    }
    const int64_t row_shape[2] = {1, count};
    const int64_t mask_shape[2] = {1, cache.length + count};

    // Everything the step holds, released however it ends: its input tensors, the binding, what it returned.
    struct StepResources {
        const OrtApi* api;
        std::vector<OrtValue*> inputs;
        OrtIoBinding* binding = nullptr;
        std::vector<OrtValue*> outputs;
        ~StepResources() {
            for (OrtValue* value : inputs) api->ReleaseValue(value);
            for (OrtValue* value : outputs) api->ReleaseValue(value);
            api->ReleaseIoBinding(binding);
        }
    } step{api, {}, nullptr, {}};
    auto wrap = [&](std::vector<int64_t>& data, const int64_t* shape) {
        OrtValue* value = nullptr;
        runtime_.check(api->CreateTensorWithDataAsOrtValue(cpu_, data.data(), data.size() * sizeof(int64_t), shape, 2,
                                                           ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, &value),
                       "creating an input tensor");
        step.inputs.push_back(value);
        return value;
    };

    // Bound rather than passed to Run: the present tensors stay where the execution provider made them (device
    // memory under DirectML) and come back as the next step's past; only the logits are copied out.
    runtime_.check(api->CreateIoBinding(session_, &step.binding), "binding the graph's inputs");
    size_t past = 0;
    for (size_t i = 0; i < input_names_.size(); ++i) {
        const OrtValue* value = nullptr;
        switch (input_kinds_[i]) {
            case Input::InputIds:
                value = wrap(ids, row_shape);
                break;
            case Input::AttentionMask:
                value = wrap(mask, mask_shape);
                break;
            case Input::PositionIds:
                value = wrap(positions, row_shape);
                break;
            case Input::Past:
                value = cache.tensors[past++];
                break;
        }
        runtime_.check(api->BindInput(step.binding, input_names_[i].c_str(), value), "binding an input");
    }
    for (size_t i = 0; i < output_names_.size(); ++i) {
        runtime_.check(api->BindOutputToDevice(step.binding, output_names_[i].c_str(), i == 0 ? cpu_ : cache_memory_),
                       "binding an output");
    }
    {
        std::unique_lock<std::mutex> lock(run_mutex_, std::defer_lock);
        if (runtime_.one_run_per_session()) {
            lock.lock();
        }
        runtime_.check(api->RunWithBinding(session_, nullptr, step.binding), "running the graph");
    }

    OrtAllocator* allocator = nullptr;
    runtime_.check(api->GetAllocatorWithDefaultOptions(&allocator), "getting the default allocator");
    OrtValue** values = nullptr;
    size_t n_values = 0;
    runtime_.check(api->GetBoundOutputValues(step.binding, allocator, &values, &n_values), "reading the outputs");
    step.outputs.assign(values, values + n_values);
    runtime_.check(api->AllocatorFree(allocator, values), "freeing the outputs' list");
    if (n_values != output_names_.size()) {
        throw EngineError(ERR_INTERNAL, "the graph returned " + std::to_string(n_values) + " of " +
                                            std::to_string(output_names_.size()) + " bound outputs");
    }

    void* data = nullptr;
    runtime_.check(api->GetTensorMutableData(step.outputs[0], &data), "reading the logits");
    logits.resize(static_cast<size_t>(vocab_size_));
    const size_t last = (n - 1) * static_cast<size_t>(vocab_size_);
    if (logits_type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        std::memcpy(logits.data(), static_cast<const float*>(data) + last, logits.size() * sizeof(float));
    } else {
        const auto* halves = static_cast<const uint16_t*>(data) + last;
        std::transform(halves, halves + vocab_size_, logits.begin(), half_to_float);
    }
    // The presents become the cache; the pasts they replace are released with the step.
    for (size_t i = 0; i < cache.tensors.size(); ++i) {
        std::swap(cache.tensors[i], step.outputs[i + 1]);
    }
    cache.length += count;
}
