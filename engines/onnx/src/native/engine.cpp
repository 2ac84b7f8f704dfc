// The engine ABI (engine_api.h, version 1) over ONNX Runtime: entry points, the loaded models, errors.
#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "engine_api.h"
#include "errors.h"
#include "model.h"
#include "model_folder.h"
#include "ort_runtime.h"

// A field of a host-filled struct is read only when the host's struct_size covers it (engine_api.h).
#define HAS_FIELD(ptr, type, field) ((ptr)->struct_size >= offsetof(type, field) + sizeof((ptr)->field))

namespace {

thread_local std::string t_last_error;

struct Engine {
    std::mutex mutex;  // guards everything below but the runtime, which is set only by init and shutdown
    bool initialized = false;
    OrtRuntime runtime;
    int32_t device_index = 0;
    int32_t n_threads = 0;
    uint64_t budget_bytes = 0;  // EngineConfig.vram_budget_bytes: all models together; 0 = no limit
    std::map<std::string, std::shared_ptr<Model>> models;
    std::set<std::string> loading;  // ids being loaded, so that a second load of one fails at once
    std::shared_ptr<Model> default_model;
    std::vector<TokenResult> results;  // engine_generate's answer, valid until the next call
    std::vector<std::string> result_texts;

    uint64_t memory_in_use() const {
        uint64_t total = default_model ? default_model->memory_bytes() : 0;
        for (const auto& entry : models) {
            total += entry.second->memory_bytes();
        }
        return total;
    }
};

Engine g_engine;

EngineInfo g_info = {
    ENGINE_ABI_VERSION, "onnx", ENGINE_VERSION, sizeof(EngineInfo), ENGINE_FLAG_THREAD_SAFE | ENGINE_FLAG_LOGIT_BIAS,
};

// Runs an entry point's body, turning what it throws into an error code and this thread's last error: no C++
// exception crosses the C boundary.
template <typename Body>
int32_t guarded(Body body) {
    try {
        body();
        return ERR_OK;
    } catch (const EngineError& error) {
        t_last_error = error.what();
        return error.code();
    } catch (const std::bad_alloc&) {
        t_last_error = "out of memory";
        return ERR_OUT_OF_MEMORY;
    } catch (const std::exception& error) {
        t_last_error = error.what();
        return ERR_INTERNAL;
    }
}

void require_initialized() {
    if (!g_engine.initialized) {
        throw EngineError(ERR_NOT_INITIALIZED, "engine_init has not succeeded");
    }
}

struct LoadRequest {
    std::string path;
    ModelOptions options;
    uint64_t budget_bytes = 0;
};

LoadRequest read_load_params(const EngineModelLoadParams* params) {
    if (params == nullptr || !HAS_FIELD(params, EngineModelLoadParams, model_path) || params->model_path == nullptr) {
        throw EngineError(ERR_INVALID_ARGUMENT, "the load names no model path");
    }
    if (HAS_FIELD(params, EngineModelLoadParams, format) && params->format != nullptr &&
        std::string(params->format) != "onnx") {
        throw EngineError(ERR_UNSUPPORTED,
                          std::string("this engine loads ONNX model folders, not format '") + params->format + "'");
    }
    LoadRequest request;
    request.path = params->model_path;
    request.options.context_length =
        HAS_FIELD(params, EngineModelLoadParams, context_length) ? params->context_length : 0;
    request.options.n_parallel = HAS_FIELD(params, EngineModelLoadParams, n_parallel) ? params->n_parallel : 0;
    request.options.n_threads = g_engine.n_threads;
    request.options.device_index = g_engine.device_index;
    request.budget_bytes = HAS_FIELD(params, EngineModelLoadParams, vram_budget_bytes) ? params->vram_budget_bytes : 0;
    if (request.options.context_length < 0 || request.options.n_parallel < 0) {
        throw EngineError(ERR_INVALID_ARGUMENT, "context_length and n_parallel must not be negative");
    }
    return request;
}

uint64_t estimate(const LoadRequest& request, const ModelFolder& folder) {
    const int32_t context =
        request.options.context_length > 0 ? request.options.context_length : folder.trained_context;
    const int32_t parallel = request.options.n_parallel > 0 ? request.options.n_parallel : k_default_parallel;
    return estimate_model_bytes(folder, context, parallel);
}

void check_budget(uint64_t bytes, uint64_t model_budget) {
    if (model_budget != 0 && bytes > model_budget) {
        throw EngineError(ERR_OUT_OF_MEMORY, "the model needs " + std::to_string(bytes) + " bytes; its budget is " +
                                                 std::to_string(model_budget));
    }
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    if (g_engine.budget_bytes != 0 && g_engine.memory_in_use() + bytes > g_engine.budget_bytes) {
        throw EngineError(
            ERR_OUT_OF_MEMORY,
            "the model needs " + std::to_string(bytes) + " bytes; the engine's budget leaves " +
                std::to_string(g_engine.budget_bytes - std::min(g_engine.budget_bytes, g_engine.memory_in_use())));
    }
}

void progress(const EngineModelLoadParams* params, float fraction, const char* phase) {
    if (HAS_FIELD(params, EngineModelLoadParams, progress_user_data) && params->progress != nullptr) {
        params->progress(params->progress_user_data, fraction, phase);
    }
}

std::shared_ptr<Model> find_model(const char* model_id) {
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    if (model_id == nullptr) {
        if (!g_engine.default_model) {
            throw EngineError(ERR_MODEL_NOT_LOADED, "no model is loaded");
        }
        return g_engine.default_model;
    }
    const auto it = g_engine.models.find(model_id);
    if (it == g_engine.models.end()) {
        throw EngineError(ERR_MODEL_NOT_LOADED, std::string("model '") + model_id + "' is not loaded");
    }
    return it->second;
}

}  // namespace

extern "C" {

ENGINE_API EngineInfo* engine_get_info(void) {
    return &g_info;
}

ENGINE_API int engine_init(EngineConfig* config) {
    return guarded([&] {
        if (config == nullptr || config->plugin_dir == nullptr) {
            throw EngineError(ERR_INVALID_ARGUMENT, "engine_init needs the plugin's folder");
        }
        g_engine.runtime.open(config->plugin_dir);
        g_engine.device_index = config->device_index;
        g_engine.n_threads = HAS_FIELD(config, EngineConfig, n_threads) ? config->n_threads : 0;
        g_engine.budget_bytes = config->vram_budget_bytes;
        g_engine.initialized = true;
    });
}

ENGINE_API int engine_load_model(const char* model_path) {
    return guarded([&] {
        require_initialized();
        if (model_path == nullptr) {
            throw EngineError(ERR_INVALID_ARGUMENT, "model_path is NULL");
        }
        ModelOptions options;
        options.n_parallel = 1;
        options.n_threads = g_engine.n_threads;
        options.device_index = g_engine.device_index;
        g_engine.default_model.reset();
        g_engine.default_model = std::make_shared<Model>(g_engine.runtime, read_model_folder(model_path), options);
    });
}

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    return guarded([&] {
        require_initialized();
        if (prompt == nullptr || results == nullptr) {
            throw EngineError(ERR_INVALID_ARGUMENT, "prompt and results must not be NULL");
        }
        g_engine.results.clear();
        g_engine.result_texts.clear();
        // The plugin's own settings, llama.cpp's usual defaults.
        EngineGenerateParams params{};
        params.struct_size = sizeof params;
        params.prompt = prompt;
        params.prompt_len = static_cast<int32_t>(std::string(prompt).size());
        params.max_tokens = 256;
        params.temperature = 0.8f;
        params.top_p = 0.95f;
        params.top_k = 40;
        params.min_p = 0.05f;
        params.seed = ENGINE_SEED_RANDOM;
        params.flags = ENGINE_GENERATE_ADD_SPECIAL;
        EngineGenerateResult result{};
        result.struct_size = sizeof result;
        find_model(nullptr)->generate(
            params,
            [](void*, const TokenResult* token) -> int32_t {
                if (token != nullptr) {
                    g_engine.result_texts.emplace_back(token->text, static_cast<size_t>(token->text_len));
                    g_engine.results.push_back({token->token_id, token->text_len, nullptr, token->logprob});
                }
                return 0;
            },
            nullptr, result);
        for (size_t i = 0; i < g_engine.results.size(); ++i) {
            g_engine.results[i].text = g_engine.result_texts[i].data();
        }
        g_engine.results.push_back({-1, 0, nullptr, 0});
        *results = g_engine.results.data();
    });
}

ENGINE_API void engine_shutdown(void) {
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    g_engine.models.clear();
    g_engine.default_model.reset();
    g_engine.runtime.close();
    g_engine.initialized = false;
}

ENGINE_API const char* engine_get_last_error(void) {
    return t_last_error.c_str();
}

ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params, EngineModelInfo* info) {
    std::string id;
    const int32_t code = guarded([&] {
        require_initialized();
        if (model_id == nullptr || info == nullptr) {
            throw EngineError(ERR_INVALID_ARGUMENT, "model_id and info must not be NULL");
        }
        const LoadRequest request = read_load_params(params);
        {
            std::lock_guard<std::mutex> lock(g_engine.mutex);
            if (g_engine.models.count(model_id) != 0 || g_engine.loading.count(model_id) != 0) {
                throw EngineError(ERR_INVALID_ARGUMENT, std::string("model '") + model_id + "' is already loaded");
            }
            g_engine.loading.insert(model_id);
            id = model_id;
        }
        const ModelFolder folder = read_model_folder(request.path);
        check_budget(estimate(request, folder), request.budget_bytes);
        progress(params, 0.0f, "weights");
        auto model = std::make_shared<Model>(g_engine.runtime, folder, request.options);
        progress(params, 1.0f, "weights");
        check_budget(model->memory_bytes(), request.budget_bytes);
        if (HAS_FIELD(info, EngineModelInfo, context_length)) info->context_length = model->context_length();
        if (HAS_FIELD(info, EngineModelInfo, vram_bytes)) info->vram_bytes = model->memory_bytes();
        std::lock_guard<std::mutex> lock(g_engine.mutex);
        g_engine.models[model_id] = std::move(model);
        g_engine.loading.erase(model_id);
        id.clear();
    });
    if (!id.empty()) {
        std::lock_guard<std::mutex> lock(g_engine.mutex);
        g_engine.loading.erase(id);
    }
    return code;
}

ENGINE_API int32_t engine_model_unload(const char* model_id) {
    return guarded([&] {
        require_initialized();
        if (model_id == nullptr) {
            throw EngineError(ERR_INVALID_ARGUMENT, "model_id is NULL");
        }
        std::shared_ptr<Model> model;  // freed outside the lock: releasing a session takes a while
        std::lock_guard<std::mutex> lock(g_engine.mutex);
        const auto it = g_engine.models.find(model_id);
        if (it == g_engine.models.end()) {
            throw EngineError(ERR_INVALID_ARGUMENT, std::string("model '") + model_id + "' is not loaded");
        }
        model = std::move(it->second);
        g_engine.models.erase(it);
    });
}

ENGINE_API int32_t engine_model_estimate_vram(const EngineModelLoadParams* params, uint64_t* bytes) {
    return guarded([&] {
        require_initialized();
        if (bytes == nullptr) {
            throw EngineError(ERR_INVALID_ARGUMENT, "bytes is NULL");
        }
        const LoadRequest request = read_load_params(params);
        const ModelFolder folder = read_model_folder(request.path);
        if (folder.layers <= 0 || folder.kv_heads <= 0 || folder.head_dim <= 0 || folder.vocab_size <= 0) {
            throw EngineError(ERR_MODEL_CORRUPT,
                              "the model folder's configuration does not give the layers, KV heads, head "
                              "size and vocabulary the estimate needs");
        }
        *bytes = estimate(request, folder);
    });
}

ENGINE_API uint64_t engine_get_vram_used(void) {
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    return g_engine.memory_in_use();
}

ENGINE_API int32_t engine_generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token,
                                          void* user_data, EngineGenerateResult* result) {
    return guarded([&] {
        require_initialized();
        if (params == nullptr || on_token == nullptr || result == nullptr ||
            (params->prompt == nullptr && params->prompt_len != 0) || params->prompt_len < 0 ||
            params->max_tokens < 0 || (params->n_stop > 0 && params->stop == nullptr)) {
            throw EngineError(ERR_INVALID_ARGUMENT, "invalid generation parameters");
        }
        EngineGenerateResult out{};
        find_model(params->model_id)->generate(*params, on_token, user_data, out);
        if (HAS_FIELD(result, EngineGenerateResult, finish_reason)) result->finish_reason = out.finish_reason;
        if (HAS_FIELD(result, EngineGenerateResult, prompt_tokens)) result->prompt_tokens = out.prompt_tokens;
        if (HAS_FIELD(result, EngineGenerateResult, completion_tokens))
            result->completion_tokens = out.completion_tokens;
    });
}

ENGINE_API int32_t engine_model_get_stats(const char* model_id, EngineModelStats* stats) {
    return guarded([&] {
        if (model_id == nullptr || stats == nullptr) {
            throw EngineError(ERR_INVALID_ARGUMENT, "model_id and stats must not be NULL");
        }
        find_model(model_id)->stats(*stats);
    });
}

}  // extern "C"
