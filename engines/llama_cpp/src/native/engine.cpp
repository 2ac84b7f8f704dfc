// The engine ABI (engine_api.h, version 1) over llama.cpp: entry points, the loaded models, errors and logging.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <type_traits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if defined(__APPLE__)
#  include <sys/sysctl.h>
#endif

#include "engine_api.h"
#include "errors.h"
#include "llama_library.h"
#include "model.h"

// A field of a host-filled struct is read only when the host's struct_size covers it (engine_api.h).
#define HAS_FIELD(ptr, field) \
  ((ptr)->struct_size >= offsetof(std::remove_cv_t<std::remove_pointer_t<decltype(ptr)>>, field) + sizeof((ptr)->field))

namespace {

thread_local std::string t_last_error;
thread_local LogCapture* t_capture = nullptr;

int32_t report(const EngineError& error) {
    t_last_error = error.message;
    return error.code;
}

int32_t report(int32_t code, std::string message) {
    return report(engine_error(code, std::move(message)));
}

struct Engine {
    std::mutex mutex;  // guards `initialized`, `models`, `loading` and `default_model`
    bool initialized = false;
    Runtime runtime;
    uint64_t budget_bytes = 0;  // EngineConfig.vram_budget_bytes: all models together; 0 = no limit
    std::map<std::string, std::shared_ptr<Model>> models;
    std::set<std::string> loading;         // ids being loaded, so a second load of one fails at once
    std::shared_ptr<Model> default_model;  // engine_load_model's
    std::vector<TokenResult> results;      // engine_generate's answer, valid until the next call
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

// Physical cores, as llama.cpp's tools default to: hyper-threads share a core's arithmetic units, so more
// threads than cores only adds contention to the matrix multiplications.
int32_t physical_cores() {
#if defined(__linux__)
    std::set<std::string> cores;
    for (unsigned cpu = 0; cpu < std::thread::hardware_concurrency(); ++cpu) {
        std::ifstream siblings("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings");
        std::string line;
        if (std::getline(siblings, line)) {
            cores.insert(line);
        }
    }
    if (!cores.empty()) {
        return static_cast<int32_t>(cores.size());
    }
#elif defined(__APPLE__)
    int32_t cores = 0;
    size_t size = sizeof cores;
    if (sysctlbyname("hw.perflevel0.physicalcpu", &cores, &size, nullptr, 0) == 0 && cores > 0) {
        return cores;
    }
#endif
    return static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
}

void on_log(ggml_log_level level, const char* text, void*) {
    thread_local ggml_log_level last_level = GGML_LOG_LEVEL_INFO;
    if (level != GGML_LOG_LEVEL_CONT) {
        last_level = level;
    }
    if (last_level < GGML_LOG_LEVEL_WARN) {
        return;
    }
    std::fputs(text, stderr);
    if (t_capture != nullptr) {
        t_capture->append(text);
    }
}

std::string string_field(const char* value) {
    return value != nullptr ? value : "";
}

// llama.cpp's name for a backend's devices, and the ggml backend library that drives them.
struct GpuBackend {
    std::string name;     // as people write it: CUDA, Metal
    std::string library;  // the ggml backend's file stem
    std::string needs;    // what the machine must have for the library to load
};

GpuBackend gpu_backend(const std::string& backend) {
    if (backend == "cuda") {
        return {"CUDA", "ggml-cuda", "an NVIDIA GPU with its driver, and the CUDA runtime libraries the error names"};
    }
    if (backend == "metal") {
        return {"Metal", "ggml-metal", "a Mac with Apple Silicon"};
    }
    return {backend, "ggml-" + backend, "a GPU this build supports"};
}

// The `device_index`th GPU device llama.cpp found, or why there is none: the backend library missing from the
// folder, failing to load (no driver, no CUDA runtime), or loaded with no device to drive.
EngineError find_gpu(const std::string& backend, const std::string& plugin_dir, int32_t device_index,
                     ggml_backend_dev_t* found) {
    std::vector<ggml_backend_dev_t> gpus;
    for (size_t i = 0; i < lib.ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t device = lib.ggml_backend_dev_get(i);
        const enum ggml_backend_dev_type type = lib.ggml_backend_dev_type(device);
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) {
            gpus.push_back(device);
        }
    }
    if (device_index >= 0 && static_cast<size_t>(device_index) < gpus.size()) {
        *found = gpus[device_index];
        return {};
    }
    const GpuBackend gpu = gpu_backend(backend);
    if (!gpus.empty()) {
        return engine_error(ERR_UNSUPPORTED, "no " + gpu.name + " device " + std::to_string(device_index) +
                                                 ": llama.cpp found " + std::to_string(gpus.size()) +
                                                 " (devices count from 0)");
    }
#if defined(_WIN32)
    const std::string file = gpu.library + ".dll";
#else
    const std::string file = "lib" + gpu.library + ".so";  // ggml's backends are .so on macOS too
#endif
    const std::filesystem::path path = std::filesystem::u8path(plugin_dir) / std::filesystem::u8path(file);
    std::string reason;
    if (!std::filesystem::exists(path)) {
        reason = "the plugin folder has no " + file + "; rebuild it";
    } else {
        // ggml loaded it silently at first; loading it once more says why it failed.
        LogCapture log;
        if (lib.ggml_backend_load(path.u8string().c_str()) == nullptr) {
            reason = "llama.cpp's " + gpu.name + " backend (" + file + ") does not load: " + log.text() +
                     ". It needs " + gpu.needs;
        } else {
            reason = "llama.cpp's " + gpu.name + " backend loaded but sees no device (check the driver)";
        }
    }
    return engine_error(ERR_UNSUPPORTED, "no " + gpu.name + " device found: " + reason);
}

EngineError check_initialized() {
    if (!g_engine.initialized) {
        return engine_error(ERR_NOT_INITIALIZED, "engine_init has not succeeded");
    }
    return {};
}

EngineError read_load_params(const EngineModelLoadParams* params, LoadSettings* settings, uint64_t* budget) {
    if (params == nullptr || !HAS_FIELD(params, model_path) || params->model_path == nullptr) {
        return engine_error(ERR_INVALID_ARGUMENT, "the load parameters name no model_path");
    }
    settings->path = params->model_path;
    settings->context_length = HAS_FIELD(params, context_length) ? params->context_length : 0;
    settings->n_parallel = HAS_FIELD(params, n_parallel) ? params->n_parallel : 0;
    *budget = HAS_FIELD(params, vram_budget_bytes) ? params->vram_budget_bytes : 0;
    if (HAS_FIELD(params, progress_user_data)) {
        settings->progress = LoadProgress{params->progress, params->progress_user_data};
    }
    const std::string format = HAS_FIELD(params, format) ? string_field(params->format) : "";
    if (!format.empty() && format != "gguf") {
        return engine_error(ERR_UNSUPPORTED, "llama_cpp loads GGUF models, not " + format);
    }
    if (settings->context_length < 0 || settings->n_parallel < 0) {
        return engine_error(ERR_INVALID_ARGUMENT, "context_length and n_parallel must not be negative");
    }
    return {};
}

// What the decode loop needs from the host's request, checked.
EngineError read_generate_params(const EngineGenerateParams* params, GenerationRequest* request) {
    if (params == nullptr || !HAS_FIELD(params, n_stop)) {
        return engine_error(ERR_INVALID_ARGUMENT, "the generation parameters are missing or too short");
    }
    if (params->prompt_len < 0 || (params->prompt == nullptr && params->prompt_len > 0)) {
        return engine_error(ERR_INVALID_ARGUMENT, "prompt and prompt_len disagree");
    }
    if (params->max_tokens < 0) {
        return engine_error(ERR_INVALID_ARGUMENT, "max_tokens must not be negative");
    }
    if (!(params->temperature >= 0.0f) || !std::isfinite(params->temperature)) {
        return engine_error(ERR_INVALID_ARGUMENT, "temperature must be a finite number >= 0");
    }
    if (!(params->top_p >= 0.0f && params->top_p <= 1.0f) || !(params->min_p >= 0.0f && params->min_p <= 1.0f)) {
        return engine_error(ERR_INVALID_ARGUMENT, "top_p and min_p must be within [0, 1]");
    }
    if (params->top_k < 0) {
        return engine_error(ERR_INVALID_ARGUMENT, "top_k must not be negative");
    }
    if (!std::isfinite(params->presence_penalty) || !std::isfinite(params->frequency_penalty)) {
        return engine_error(ERR_INVALID_ARGUMENT, "the penalties must be finite numbers");
    }
    if (params->n_stop < 0 || (params->n_stop > 0 && params->stop == nullptr)) {
        return engine_error(ERR_INVALID_ARGUMENT, "stop and n_stop disagree");
    }
    for (int32_t i = 0; i < params->n_stop; ++i) {
        if (params->stop[i] == nullptr) {
            return engine_error(ERR_INVALID_ARGUMENT, "stop string " + std::to_string(i) + " is NULL");
        }
        request->stops.emplace_back(params->stop[i]);
    }
    if (HAS_FIELD(params, json_schema) && params->json_schema != nullptr) {
        request->json_schema = params->json_schema;
    }
    if (HAS_FIELD(params, n_logit_bias) && params->n_logit_bias > 0) {
        if (params->logit_bias_tokens == nullptr || params->logit_bias_values == nullptr) {
            return engine_error(ERR_INVALID_ARGUMENT, "logit_bias arrays and n_logit_bias disagree");
        }
        for (int32_t i = 0; i < params->n_logit_bias; ++i) {
            if (!std::isfinite(params->logit_bias_values[i])) {
                return engine_error(ERR_INVALID_ARGUMENT, "a logit bias must be a finite number");
            }
            request->logit_bias.emplace_back(params->logit_bias_tokens[i], params->logit_bias_values[i]);
        }
    }
    request->sampling.temperature = params->temperature;
    request->sampling.top_p = params->top_p;
    request->sampling.top_k = params->top_k;
    request->sampling.min_p = params->min_p;
    request->sampling.presence_penalty = params->presence_penalty;
    request->sampling.frequency_penalty = params->frequency_penalty;
    request->sampling.seed = params->seed;
    if (params->seed == ENGINE_SEED_RANDOM) {
        std::random_device entropy;
        request->sampling.seed = (static_cast<uint64_t>(entropy()) << 32) | entropy();
    }
    request->max_tokens = params->max_tokens;
    request->logprobs = (params->flags & ENGINE_GENERATE_LOGPROBS) != 0;
    request->ignore_eos = (params->flags & ENGINE_GENERATE_IGNORE_EOS) != 0;
    return {};
}

std::shared_ptr<Model> find_model(const char* model_id) {
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    if (model_id == nullptr) {
        return g_engine.default_model;
    }
    const auto found = g_engine.models.find(model_id);
    return found != g_engine.models.end() ? found->second : nullptr;
}

// The budget left for one more model: the smaller of its own and what the engine's leaves; 0 = no limit.
uint64_t load_budget(uint64_t model_budget) {
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    if (g_engine.budget_bytes == 0) {
        return model_budget;
    }
    const uint64_t used = g_engine.memory_in_use();
    const uint64_t left = g_engine.budget_bytes > used ? g_engine.budget_bytes - used : 1;  // 1: nothing fits
    return model_budget == 0 ? left : std::min(model_budget, left);
}

// The message of an exception caught at the boundary; left empty when even that cannot be stored.
int32_t report_exception(int32_t code, const char* what) noexcept {
    try {
        t_last_error = what;
    } catch (...) {
        t_last_error.clear();
    }
    return code;
}

// Runs an entry point's body, turning a C++ exception into an error code with its message: an exception
// crossing the C boundary would end the host's process.
template <typename Body>
int32_t guarded(Body body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return report_exception(ERR_OUT_OF_MEMORY, "llama_cpp: out of host memory");
    } catch (const std::exception& error) {
        return report_exception(ERR_INTERNAL, error.what());
    } catch (...) {
        return report_exception(ERR_INTERNAL, "llama_cpp: an unknown C++ exception");
    }
}

}  // namespace

LogCapture::LogCapture() : outer_(t_capture) {
    t_capture = this;
}

LogCapture::~LogCapture() {
    t_capture = outer_;
}

std::string LogCapture::text() const {
    std::string joined;
    size_t start = 0;
    while (start < lines_.size()) {
        size_t end = lines_.find('\n', start);
        if (end == std::string::npos) {
            end = lines_.size();
        }
        std::string line = lines_.substr(start, end - start);
        line.erase(0, line.find_first_not_of(" \t"));
        line.erase(line.find_last_not_of(" \t\r") + 1);
        if (!line.empty()) {
            joined += (joined.empty() ? "" : "; ") + line;
        }
        start = end + 1;
    }
    return joined;
}

void install_log_handler() {
    lib.llama_log_set(on_log, nullptr);  // sets ggml's handler too
}

// What each entry point does, below the exception barrier.
namespace entry {

int32_t init(EngineConfig* config) {
    if (config == nullptr) {
        return report(ERR_INVALID_ARGUMENT, "engine_init needs a config");
    }
    const std::string backend = HAS_FIELD(config, gpu_backend) ? string_field(config->gpu_backend) : "cpu";
    const std::string plugin_dir = HAS_FIELD(config, plugin_dir) ? string_field(config->plugin_dir) : "";
    const int32_t device_index = HAS_FIELD(config, device_index) ? config->device_index : 0;
    const int32_t threads = HAS_FIELD(config, n_threads) ? config->n_threads : 0;

    if (EngineError error = open_llama_library(plugin_dir)) {
        return report(error);
    }
    install_log_handler();
    // The backends (libggml-cpu-<variant>, libggml-cuda, ...) sit beside this library, wherever it was copied.
    // They stay registered for the process, so a plugin opened again does not load them twice.
    if (lib.ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU) == nullptr) {
        LogCapture log;
        lib.ggml_backend_load_all_from_path(plugin_dir.c_str());
        if (lib.ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU) == nullptr) {
            return report(ERR_INTERNAL, "no ggml CPU backend could be loaded from '" + plugin_dir + "': " + log.text());
        }
    }
    lib.llama_backend_init();

    Runtime runtime;
    runtime.on_cpu = backend == "cpu";
    runtime.n_threads = threads > 0 ? threads : physical_cores();
    if (!runtime.on_cpu) {
        ggml_backend_dev_t device = nullptr;
        if (EngineError error = find_gpu(backend, plugin_dir, device_index, &device)) {
            return report(error);
        }
        runtime.devices.push_back(device);
    }
    runtime.devices.push_back(nullptr);

    std::lock_guard<std::mutex> lock(g_engine.mutex);
    g_engine.runtime = runtime;
    g_engine.budget_bytes = HAS_FIELD(config, vram_budget_bytes) ? config->vram_budget_bytes : 0;
    g_engine.initialized = true;
    return ERR_OK;
}

void shutdown() {
    std::map<std::string, std::shared_ptr<Model>> models;
    std::shared_ptr<Model> default_model;
    {
        std::lock_guard<std::mutex> lock(g_engine.mutex);
        models.swap(g_engine.models);
        default_model.swap(g_engine.default_model);
        g_engine.results.clear();
        g_engine.result_texts.clear();
        g_engine.initialized = false;
    }
    models.clear();
    default_model.reset();
    lib.llama_backend_free();
}

int32_t model_load(const char* model_id, const EngineModelLoadParams* params, EngineModelInfo* info) {
    if (EngineError error = check_initialized()) {
        return report(error);
    }
    if (model_id == nullptr || *model_id == '\0' || info == nullptr) {
        return report(ERR_INVALID_ARGUMENT, "engine_model_load needs a model id and an info struct");
    }
    LoadSettings settings;
    uint64_t budget = 0;
    if (EngineError error = read_load_params(params, &settings, &budget)) {
        return report(error);
    }
    {
        std::lock_guard<std::mutex> lock(g_engine.mutex);
        if (g_engine.models.count(model_id) != 0 || !g_engine.loading.insert(model_id).second) {
            return report(ERR_INVALID_ARGUMENT, std::string("a model is already loaded as '") + model_id + "'");
        }
    }
    std::unique_ptr<Model> model;
    const EngineError error = Model::load(settings, g_engine.runtime, load_budget(budget), &model);
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    g_engine.loading.erase(model_id);
    if (error) {
        return report(error);
    }
    if (HAS_FIELD(info, context_length)) {
        info->context_length = model->context_length();
    }
    if (HAS_FIELD(info, vram_bytes)) {
        info->vram_bytes = model->memory_bytes();
    }
    if (HAS_FIELD(info, embedding_length)) {
        info->embedding_length = model->embedding_length();
    }
    g_engine.models.emplace(model_id, std::move(model));
    return ERR_OK;
}

int32_t model_unload(const char* model_id) {
    std::shared_ptr<Model> model;
    {
        std::lock_guard<std::mutex> lock(g_engine.mutex);
        const auto found = model_id != nullptr ? g_engine.models.find(model_id) : g_engine.models.end();
        if (found == g_engine.models.end()) {
            return report(ERR_INVALID_ARGUMENT, "no model is loaded as '" + string_field(model_id) + "'");
        }
        model = std::move(found->second);
        g_engine.models.erase(found);
    }
    model->stop();
    return ERR_OK;  // the memory is freed here, or when the last generation still holding the model returns
}

int32_t model_estimate_vram(const EngineModelLoadParams* params, uint64_t* bytes) {
    if (EngineError error = check_initialized()) {
        return report(error);
    }
    LoadSettings settings;
    uint64_t budget = 0;
    if (bytes == nullptr) {
        return report(ERR_INVALID_ARGUMENT, "engine_model_estimate_vram needs somewhere to write the estimate");
    }
    if (EngineError error = read_load_params(params, &settings, &budget)) {
        return report(error);
    }
    if (EngineError error = Model::estimate(settings, g_engine.runtime, bytes)) {
        return report(error);
    }
    return ERR_OK;
}

uint64_t vram_used() {
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    return g_engine.memory_in_use();
}

int32_t model_get_stats(const char* model_id, EngineModelStats* stats) {
    if (stats == nullptr) {
        return report(ERR_INVALID_ARGUMENT, "engine_model_get_stats needs somewhere to write the stats");
    }
    const std::shared_ptr<Model> model = model_id != nullptr ? find_model(model_id) : nullptr;
    if (model == nullptr) {
        return report(ERR_MODEL_NOT_LOADED, "no model is loaded as '" + string_field(model_id) + "'");
    }
    const ModelStats now = model->stats();
    if (HAS_FIELD(stats, requests_running)) {
        stats->requests_running = now.running;
    }
    if (HAS_FIELD(stats, requests_waiting)) {
        stats->requests_waiting = now.waiting;
    }
    if (HAS_FIELD(stats, kv_cells_used)) {
        stats->kv_cells_used = now.kv_used;
    }
    if (HAS_FIELD(stats, kv_cells_total)) {
        stats->kv_cells_total = now.kv_total;
    }
    return ERR_OK;
}

int32_t generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token, void* user_data,
                        EngineGenerateResult* result) {
    if (EngineError error = check_initialized()) {
        return report(error);
    }
    if (on_token == nullptr || result == nullptr) {
        return report(ERR_INVALID_ARGUMENT, "engine_generate_stream needs a token callback and a result struct");
    }
    GenerationRequest request;
    if (EngineError error = read_generate_params(params, &request)) {
        return report(error);
    }
    const std::shared_ptr<Model> model = find_model(params->model_id);
    if (model == nullptr) {
        return report(ERR_MODEL_NOT_LOADED, params->model_id != nullptr
                                                ? "no model is loaded as '" + std::string(params->model_id) + "'"
                                                : std::string("no model was loaded with engine_load_model"));
    }
    for (const auto& [token, bias] : request.logit_bias) {
        if (token < 0 || token >= lib.llama_vocab_n_tokens(model->vocab())) {
            return report(ERR_INVALID_ARGUMENT, "logit_bias names token " + std::to_string(token) +
                                                    ", outside the vocabulary of " +
                                                    std::to_string(lib.llama_vocab_n_tokens(model->vocab())));
        }
    }
    if (!request.json_schema.empty()) {
        if (EngineError error = JsonConstraint::create(model->vocab(), request.json_schema, &request.constraint)) {
            return report(error);
        }
    }
    // A long prompt is tokenized in pieces, asking the host between them whether to go on.
    const auto keep_going = [&] { return on_token(user_data, nullptr) == 0; };
    bool cancelled = false;
    if (EngineError error = model->tokenize(
            params->prompt, params->prompt_len, (params->flags & ENGINE_GENERATE_ADD_SPECIAL) != 0,
            (params->flags & ENGINE_GENERATE_PARSE_SPECIAL) != 0, keep_going, &request.prompt, &cancelled)) {
        return report(error);
    }
    if (cancelled) {
        if (HAS_FIELD(result, finish_reason)) {
            result->finish_reason = ENGINE_FINISH_CANCELLED;
        }
        if (HAS_FIELD(result, prompt_tokens)) {
            result->prompt_tokens = 0;
        }
        if (HAS_FIELD(result, completion_tokens)) {
            result->completion_tokens = 0;
        }
        return ERR_OK;
    }
    request.on_token = on_token;
    request.user_data = user_data;
    model->generate(&request);
    if (request.error) {
        return report(request.error);
    }
    if (HAS_FIELD(result, finish_reason)) {
        result->finish_reason = request.finish_reason;
    }
    if (HAS_FIELD(result, prompt_tokens)) {
        result->prompt_tokens = static_cast<int32_t>(request.prompt.size());
    }
    if (HAS_FIELD(result, completion_tokens)) {
        result->completion_tokens = request.completion_tokens;
    }
    return ERR_OK;
}

int32_t embed(const EngineEmbedParams* params, float* embeddings, size_t n_floats, EngineEmbedResult* result) {
    if (EngineError error = check_initialized()) {
        return report(error);
    }
    if (params == nullptr || result == nullptr || !HAS_FIELD(params, n_inputs) || params->n_inputs < 0 ||
        (params->n_inputs > 0 && (params->inputs == nullptr || params->input_lens == nullptr))) {
        return report(ERR_INVALID_ARGUMENT, "engine_embed needs its inputs and a result struct");
    }
    const std::shared_ptr<Model> model = params->model_id != nullptr ? find_model(params->model_id) : nullptr;
    if (model == nullptr) {
        return report(ERR_MODEL_NOT_LOADED, "no model is loaded as '" + string_field(params->model_id) + "'");
    }
    if (embeddings == nullptr || n_floats < static_cast<size_t>(params->n_inputs) * model->embedding_length()) {
        return report(ERR_INVALID_ARGUMENT, "the host's buffer holds fewer than " + std::to_string(params->n_inputs) +
                                                " embeddings of " + std::to_string(model->embedding_length()));
    }
    std::vector<std::vector<llama_token>> inputs(params->n_inputs);
    int32_t n_tokens = 0;
    for (int32_t i = 0; i < params->n_inputs; ++i) {
        if (params->input_lens[i] <= 0) {
            return report(ERR_INVALID_ARGUMENT, "input " + std::to_string(i) + " is empty");
        }
        bool cancelled = false;
        if (EngineError error = model->tokenize(
                params->inputs[i], params->input_lens[i], (params->flags & ENGINE_GENERATE_ADD_SPECIAL) != 0,
                (params->flags & ENGINE_GENERATE_PARSE_SPECIAL) != 0, [] { return true; }, &inputs[i], &cancelled)) {
            return report(error);
        }
        n_tokens += static_cast<int32_t>(inputs[i].size());
    }
    if (EngineError error = model->embed(inputs, embeddings)) {
        return report(error);
    }
    if (HAS_FIELD(result, prompt_tokens)) {
        result->prompt_tokens = n_tokens;
    }
    return ERR_OK;
}

// The single-model entry points every ABI 1 plugin has. The model takes its trained context and one
// request at a time; engine_generate samples with llama.cpp's usual defaults (temperature 0.8, top-k 40,
// top-p 0.95, min-p 0.05) for at most 256 tokens.
int32_t load_model(const char* model_path) {
    if (EngineError error = check_initialized()) {
        return report(error);
    }
    if (model_path == nullptr) {
        return report(ERR_INVALID_ARGUMENT, "engine_load_model needs a path");
    }
    LoadSettings settings;
    settings.path = model_path;
    settings.n_parallel = 1;
    {
        std::lock_guard<std::mutex> lock(g_engine.mutex);
        g_engine.default_model.reset();  // its memory is free before the next model takes it
    }
    std::unique_ptr<Model> model;
    if (EngineError error = Model::load(settings, g_engine.runtime, load_budget(0), &model)) {
        return report(error);
    }
    std::lock_guard<std::mutex> lock(g_engine.mutex);
    g_engine.default_model = std::move(model);
    return ERR_OK;
}

int32_t generate(const char* prompt, TokenResult** results) {
    if (prompt == nullptr || results == nullptr) {
        return report(ERR_INVALID_ARGUMENT, "engine_generate needs a prompt and somewhere to put the results");
    }
    EngineGenerateParams params = {};
    params.struct_size = sizeof params;
    params.flags = ENGINE_GENERATE_ADD_SPECIAL | ENGINE_GENERATE_PARSE_SPECIAL;
    params.prompt = prompt;
    params.prompt_len = static_cast<int32_t>(std::strlen(prompt));
    params.max_tokens = 256;
    params.temperature = 0.8f;
    params.top_p = 0.95f;
    params.top_k = 40;
    params.min_p = 0.05f;
    params.seed = ENGINE_SEED_RANDOM;

    g_engine.results.clear();
    g_engine.result_texts.clear();
    EngineGenerateResult outcome = {};
    outcome.struct_size = sizeof outcome;
    const auto collect = [](void*, const TokenResult* token) -> int32_t {
        if (token != nullptr) {
            g_engine.result_texts.emplace_back(token->text, static_cast<size_t>(token->text_len));
            g_engine.results.push_back(*token);
        }
        return 0;
    };
    const int32_t status = generate_stream(&params, collect, nullptr, &outcome);
    if (status != ERR_OK) {
        return status;
    }
    // The texts are in place now that result_texts no longer grows.
    for (size_t i = 0; i < g_engine.results.size(); ++i) {
        g_engine.results[i].text = g_engine.result_texts[i].data();
    }
    g_engine.results.push_back({-1, 0, nullptr, 0.0f});
    *results = g_engine.results.data();
    return ERR_OK;
}

}  // namespace entry

// The entry points of engine_api.h. Each runs its body under `guarded`: no C++ exception crosses the C boundary.
extern "C" {

ENGINE_API EngineInfo* engine_get_info(void) {
    static EngineInfo info = {ENGINE_ABI_VERSION, "llama_cpp", ENGINE_VERSION, sizeof(EngineInfo),
                              ENGINE_FLAG_THREAD_SAFE | ENGINE_FLAG_JSON_SCHEMA | ENGINE_FLAG_LOGIT_BIAS};
    return &info;
}

ENGINE_API const char* engine_get_last_error(void) {
    return t_last_error.c_str();
}

ENGINE_API int engine_init(EngineConfig* config) {
    return guarded([&] { return entry::init(config); });
}

ENGINE_API void engine_shutdown(void) {
    guarded([] {
        entry::shutdown();
        return ERR_OK;
    });
}

ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params, EngineModelInfo* info) {
    return guarded([&] { return entry::model_load(model_id, params, info); });
}

ENGINE_API int32_t engine_model_unload(const char* model_id) {
    return guarded([&] { return entry::model_unload(model_id); });
}

ENGINE_API int32_t engine_model_estimate_vram(const EngineModelLoadParams* params, uint64_t* bytes) {
    return guarded([&] { return entry::model_estimate_vram(params, bytes); });
}

ENGINE_API uint64_t engine_get_vram_used(void) {
    uint64_t bytes = 0;
    guarded([&] {
        bytes = entry::vram_used();
        return ERR_OK;
    });
    return bytes;
}

ENGINE_API int32_t engine_model_get_stats(const char* model_id, EngineModelStats* stats) {
    return guarded([&] { return entry::model_get_stats(model_id, stats); });
}

ENGINE_API int32_t engine_generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token,
                                          void* user_data, EngineGenerateResult* result) {
    return guarded([&] { return entry::generate_stream(params, on_token, user_data, result); });
}

ENGINE_API int32_t engine_embed(const EngineEmbedParams* params, float* embeddings, size_t n_floats,
                                EngineEmbedResult* result) {
    return guarded([&] { return entry::embed(params, embeddings, n_floats, result); });
}

ENGINE_API int engine_load_model(const char* model_path) {
    return guarded([&] { return entry::load_model(model_path); });
}

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    return guarded([&] { return entry::generate(prompt, results); });
}

}  // extern "C"
