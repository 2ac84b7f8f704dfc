#include "plugin.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
#include <vector>

#include "generation.h"

// ---- PluginCore, PluginCall, CallOutcome ---------------------------------------------------------

std::string PluginCore::LastError() const {
    if (fn.get_last_error == nullptr) return "";
    const char* message = fn.get_last_error();
    return message != nullptr ? message : "";
}

void PluginCore::RefreshVramUsed() {
    if (fn.get_vram_used != nullptr) vram_used = fn.get_vram_used();
}

PluginCall::PluginCall(PluginCore& core, Kind kind)
    : calls_(core.calls), exclusive_(kind == kAlone || !core.thread_safe) {
    if (exclusive_) {
        calls_.lock();
    } else {
        calls_.lock_shared();
    }
}

PluginCall::~PluginCall() {
    if (exclusive_) {
        calls_.unlock();
    } else {
        calls_.unlock_shared();
    }
}

Napi::Object CallOutcome::ToError(Napi::Env env) const {
    Napi::Object error = Napi::Object::New(env);
    error.Set("call", call);
    if (garbage) {
        error.Set("code", "plugin_error");
    } else {
        error.Set("engineCode", rc);
    }
    error.Set("message", message);
    return error;
}

void CallOutcome::Failed(const PluginCore& core, int32_t code) {
    rc = code;
    message = core.LastError();
}

void CallOutcome::Garbage(std::string finding) {
    garbage = true;
    message = std::move(finding);
}

void ThrowHostError(Napi::Env env, const char* code, const std::string& message) {
    Napi::Error error = Napi::Error::New(env, message);
    error.Set("code", code);
    error.ThrowAsJavaScriptException();
}

// ---- Calls on a thread of their own ---------------------------------------------------------------

namespace {

struct OffThreadJob {
    OffThreadJob(Napi::Env env, std::shared_ptr<PluginCore> core) : deferred(env), core(std::move(core)) {}
    Napi::Promise::Deferred deferred;
    std::shared_ptr<PluginCore> core;
    std::function<CallOutcome()> work;
    std::function<Napi::Value(Napi::Env)> result;
    CallOutcome outcome;
    std::thread thread;
};

void SettleJob(Napi::Env env, Napi::Function, OffThreadJob* job, void*) {
    job->thread.join();
    if (env != nullptr) {  // nullptr: the environment is being torn down and nobody is waiting
        if (job->outcome.ok()) {
            job->deferred.Resolve(job->result(env));
        } else {
            job->deferred.Reject(job->outcome.ToError(env));
        }
    }
    job->core->in_flight--;
    delete job;
}

using OffThreadTsfn = Napi::TypedThreadSafeFunction<OffThreadJob, void, SettleJob>;

// Runs `work` on a thread of its own and settles the returned promise on the JS thread: with
// `result(env)` when the outcome is ok, else with the outcome's error. Loading a model can take minutes,
// so these calls stay off the JS thread and off libuv's small threadpool (which fs and dns need).
Napi::Value RunOffThread(Napi::Env env, const std::shared_ptr<PluginCore>& core, std::function<CallOutcome()> work,
                         std::function<Napi::Value(Napi::Env)> result) {
    if (core->closed) {  // src/engine.ts never gets here; this keeps a closed library from being called
        ThrowHostError(env, "closed", "the engine is closed");
        return env.Undefined();
    }
    auto* job = new OffThreadJob(env, core);
    job->work = std::move(work);
    job->result = std::move(result);
    Napi::Promise promise = job->deferred.Promise();
    OffThreadTsfn tsfn = OffThreadTsfn::New(env, "llm-node:engine-call", 0, 1, job);
    core->in_flight++;
    try {
        job->thread = std::thread([job, tsfn]() mutable {
            job->outcome = job->work();
            tsfn.NonBlockingCall();
            tsfn.Release();
        });
    } catch (const std::system_error& error) {  // no thread to be had: undo, and reject
        core->in_flight--;
        tsfn.Release();
        Napi::Object failure = Napi::Object::New(env);
        failure.Set("code", "internal");
        failure.Set("message", std::string("cannot start a thread for the call: ") + error.what());
        job->deferred.Reject(failure);
        delete job;
    }
    return promise;
}

Napi::Value Undefined(Napi::Env env) {
    return env.Undefined();
}

// EngineModelLoadParams and the strings it points to, copied from the JS object src/engine.ts builds.
struct ModelLoadParams {
    explicit ModelLoadParams(const Napi::Object& js)
        : path(js.Get("path").As<Napi::String>()),
          format(js.Get("format").As<Napi::String>()),
          has_quantization(js.Get("quantization").IsString()),
          quantization(has_quantization ? js.Get("quantization").As<Napi::String>().Utf8Value() : ""),
          context_length(js.Get("contextLength").As<Napi::Number>().Int32Value()),
          vram_budget_bytes(static_cast<uint64_t>(js.Get("vramBudgetBytes").As<Napi::Number>().DoubleValue())),
          parallel(js.Get("parallel").As<Napi::Number>().Int32Value()) {}

    EngineModelLoadParams Raw() const {
        EngineModelLoadParams raw{};
        raw.struct_size = sizeof(raw);
        raw.context_length = context_length;
        raw.model_path = path.c_str();
        raw.format = format.c_str();
        raw.quantization = has_quantization ? quantization.c_str() : nullptr;
        raw.vram_budget_bytes = vram_budget_bytes;
        raw.n_parallel = parallel;
        return raw;
    }

    std::string path;
    std::string format;
    bool has_quantization;
    std::string quantization;
    int32_t context_length;
    uint64_t vram_budget_bytes;
    int32_t parallel;
};

// A load's progress on its way from the plugin to a JS listener. The plugin calls Report on its loading thread
// (or threads) as often as it likes; what moved by less than a percent within a phase is not passed on.
class LoadProgress {
public:
    // nullptr when `listener` is not a function: the load then gets no callback at all.
    static std::shared_ptr<LoadProgress> For(Napi::Env env, Napi::Value listener) {
        if (!listener.IsFunction()) return nullptr;
        auto progress = std::make_shared<LoadProgress>();
        progress->tsfn_ = Tsfn::New(env, listener.As<Napi::Function>(), "llm-node:load-progress", 0, 1);
        return progress;
    }

    ~LoadProgress() { Done(); }  // a load that never reached the plugin

    void Attach(EngineModelLoadParams& raw) {
        raw.progress = &LoadProgress::Report;
        raw.progress_user_data = this;
    }

    // After engine_model_load returned: later reports are dropped (the plugin broke the header's rule).
    void Done() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_) return;
        done_ = true;
        tsfn_.Release();
    }

private:
    struct Step {
        float fraction;
        std::string phase;
    };
    static void CallListener(Napi::Env env, Napi::Function listener, std::nullptr_t*, Step* step) {
        if (env != nullptr)
            listener.Call({Napi::Number::New(env, step->fraction), Napi::String::New(env, step->phase)});
        delete step;
    }
    using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Step, CallListener>;

    static void Report(void* user_data, float fraction, const char* phase) {
        static constexpr size_t kMaxPhase = 64;
        auto* self = static_cast<LoadProgress*>(user_data);
        if (!(fraction >= 0.0f)) fraction = 0.0f;  // NaN too
        if (fraction > 1.0f) fraction = 1.0f;
        std::string name = phase != nullptr ? std::string(phase, strnlen(phase, kMaxPhase)) : "";
        std::lock_guard<std::mutex> lock(self->mutex_);
        if (self->done_) return;
        if (name == self->phase_ && fraction < self->fraction_ + 0.01f &&
            !(fraction == 1.0f && self->fraction_ < 1.0f)) {
            return;
        }
        self->phase_ = name;
        self->fraction_ = fraction;
        self->tsfn_.NonBlockingCall(new Step{fraction, std::move(name)});
    }

    std::mutex mutex_;
    Tsfn tsfn_;
    bool done_ = false;
    std::string phase_;
    float fraction_ = -1.0f;
};

// EngineInfo.flags, or 0 when struct_size does not cover it (the plugin guide's minimal plugin leaves it 0).
uint32_t InfoFlags(const EngineInfo& info) {
    return info.struct_size >= offsetof(EngineInfo, flags) + sizeof(info.flags) ? info.flags : 0;
}

// ---- Entry points, by name ------------------------------------------------------------------------

// The slots of EntryPoints have a type each; these let one table fill and read them all.
template <auto Slot>
void StoreEntryPoint(EntryPoints& fn, void* address) {
    fn.*Slot = reinterpret_cast<std::remove_reference_t<decltype(fn.*Slot)>>(address);
}

template <auto Slot>
bool HasEntryPoint(const EntryPoints& fn) {
    return fn.*Slot != nullptr;
}

struct NamedEntryPoint {
    const char* name;
    bool required;  // a plugin without it is refused; an optional one is reported by optionalEntryPoints()
    void (*store)(EntryPoints&, void*);
    bool (*has)(const EntryPoints&);
};

template <auto Slot>
constexpr NamedEntryPoint Required(const char* name) {
    return {name, true, &StoreEntryPoint<Slot>, &HasEntryPoint<Slot>};
}

template <auto Slot>
constexpr NamedEntryPoint Optional(const char* name) {
    return {name, false, &StoreEntryPoint<Slot>, &HasEntryPoint<Slot>};
}

// engine_api.h's order, which is also the order in which a refusal names the missing ones and
// optionalEntryPoints() lists the ones found.
constexpr NamedEntryPoint kEntryPoints[] = {
    Required<&EntryPoints::get_info>("engine_get_info"),
    Required<&EntryPoints::init>("engine_init"),
    Required<&EntryPoints::load_model>("engine_load_model"),
    Required<&EntryPoints::generate>("engine_generate"),
    Required<&EntryPoints::shutdown>("engine_shutdown"),
    Optional<&EntryPoints::get_last_error>("engine_get_last_error"),
    Optional<&EntryPoints::model_load>("engine_model_load"),
    Optional<&EntryPoints::model_unload>("engine_model_unload"),
    Optional<&EntryPoints::model_estimate_vram>("engine_model_estimate_vram"),
    Optional<&EntryPoints::get_vram_used>("engine_get_vram_used"),
    Optional<&EntryPoints::generate_stream>("engine_generate_stream"),
    Optional<&EntryPoints::model_get_stats>("engine_model_get_stats"),
    Optional<&EntryPoints::embed>("engine_embed"),
};

// Fills `fn` from the library at `path`. Returns why the host refuses the plugin, or "" when it does not.
std::string ResolveEntryPoints(const SharedLibrary& library, const std::string& path, EntryPoints& fn) {
    std::string missing;  // all of them, so that a plugin author fixes them in one go
    for (const NamedEntryPoint& entry : kEntryPoints) {
        void* address = library.Symbol(entry.name);
        entry.store(fn, address);
        if (address == nullptr && entry.required) missing += (missing.empty() ? "" : ", ") + std::string(entry.name);
    }
    if (!missing.empty()) return path + " does not export the required entry point(s) " + missing;
    bool has_load = fn.model_load != nullptr;
    if (has_load != (fn.model_unload != nullptr)) {
        // engine_api.h: the two come as a pair; with only one the host could load and never free, or the reverse.
        return path + " exports " +
               (has_load ? "engine_model_load without engine_model_unload"
                         : "engine_model_unload without engine_model_load") +
               "; they come as a pair";
    }
    return "";
}

// ---- One call into the plugin ----------------------------------------------------------------------

// What CallPlugin needs to know about an entry point besides how to call it.
struct CallSpec {
    const char* name;
    PluginCall::Kind hold;
    bool lifecycle;     // engine_init, engine_shutdown: engine_model_get_stats must not run beside them
    bool changes_vram;  // re-read engine_get_vram_used after it, so that vramUsed() need not wait for the plugin
};

constexpr CallSpec kInit{"engine_init", PluginCall::kAlone, true, false};
constexpr CallSpec kLoadModel{"engine_load_model", PluginCall::kAlone, false, true};
constexpr CallSpec kModelLoad{"engine_model_load", PluginCall::kConcurrent, false, true};
constexpr CallSpec kModelUnload{"engine_model_unload", PluginCall::kConcurrent, false, true};
constexpr CallSpec kEstimateVram{"engine_model_estimate_vram", PluginCall::kConcurrent, false, false};
constexpr CallSpec kEmbed{"engine_embed", PluginCall::kConcurrent, false, false};
constexpr CallSpec kShutdown{"engine_shutdown", PluginCall::kAlone, true, false};

// Makes `call` (which returns the plugin's error code) while holding the plugin as `spec` says. A failure's
// message is read first thing after it, on the same thread and still holding the plugin: engine_api.h keeps
// it only until the next call into the plugin on that thread (engine_get_vram_used included), and
// engine_get_last_error is itself a call that a plugin which is not thread-safe must get alone.
template <typename Call>
CallOutcome CallPlugin(PluginCore& core, const CallSpec& spec, Call call) {
    CallOutcome outcome;
    outcome.call = spec.name;
    PluginCall hold(core, spec.hold);
    std::unique_lock<std::shared_mutex> lifecycle(core.lifecycle, std::defer_lock);
    if (spec.lifecycle) lifecycle.lock();
    int32_t rc = call();
    if (rc != ERR_OK) outcome.Failed(core, rc);
    if (spec.changes_vram) core.RefreshVramUsed();
    return outcome;
}

}  // namespace

// ---- Plugin ---------------------------------------------------------------------------------------

Napi::Function Plugin::Define(Napi::Env env) {
    return DefineClass(env, "Plugin",
                       {
                           InstanceMethod<&Plugin::Info>("info"),
                           InstanceMethod<&Plugin::OptionalEntryPoints>("optionalEntryPoints"),
                           InstanceMethod<&Plugin::Init>("init"),
                           InstanceMethod<&Plugin::LoadModel>("loadModel"),
                           InstanceMethod<&Plugin::ModelLoad>("modelLoad"),
                           InstanceMethod<&Plugin::ModelUnload>("modelUnload"),
                           InstanceMethod<&Plugin::EstimateVram>("estimateVram"),
                           InstanceMethod<&Plugin::VramUsed>("vramUsed"),
                           InstanceMethod<&Plugin::ModelStats>("modelStats"),
                           InstanceMethod<&Plugin::Embed>("embed"),
                           InstanceMethod<&Plugin::Shutdown>("shutdown"),
                           InstanceMethod<&Plugin::Close>("close"),
                       });
}

// new Plugin(absolutePath): opens the library and finds its entry points. Calls nothing in it.
Plugin::Plugin(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Plugin>(info) {
    Napi::Env env = info.Env();
    std::string path = info[0].As<Napi::String>();
    std::string reason;
    if (!core_->library.Open(path, reason)) {
        core_->closed = true;
        ThrowHostError(env, "open_failed", "cannot open engine plugin " + path + ": " + reason);
        return;
    }

    std::string refusal = ResolveEntryPoints(core_->library, path, core_->fn);
    if (!refusal.empty()) {
        core_->library.Close();
        core_->closed = true;
        ThrowHostError(env, "missing_symbol", refusal);
        return;
    }
    const EngineInfo* raw = core_->fn.get_info();
    core_->thread_safe =
        raw != nullptr && raw->abi_version == ENGINE_ABI_VERSION && (InfoFlags(*raw) & ENGINE_FLAG_THREAD_SAFE) != 0;
}

// What engine_get_info() says, read defensively: null when it returned NULL; only abiVersion when that
// is not ours (the rest of the struct may have another layout); id/version null when NULL.
Napi::Value Plugin::Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core_->closed) {
        ThrowHostError(env, "closed", "the engine is closed");
        return env.Undefined();
    }
    const EngineInfo* raw = core_->fn.get_info();
    if (raw == nullptr) return env.Null();
    Napi::Object result = Napi::Object::New(env);
    result.Set("abiVersion", raw->abi_version);
    if (raw->abi_version != ENGINE_ABI_VERSION) return result;
    result.Set("id", raw->engine_id != nullptr ? Napi::String::New(env, raw->engine_id) : env.Null());
    result.Set("version", raw->version != nullptr ? Napi::String::New(env, raw->version) : env.Null());
    result.Set("flags", InfoFlags(*raw));
    return result;
}

Napi::Value Plugin::OptionalEntryPoints(const Napi::CallbackInfo& info) {
    std::vector<const char*> found;
    for (const NamedEntryPoint& entry : kEntryPoints) {
        if (!entry.required && entry.has(core_->fn)) found.push_back(entry.name);
    }
    Napi::Array names = Napi::Array::New(info.Env(), found.size());
    for (uint32_t i = 0; i < found.size(); ++i) names.Set(i, found[i]);
    return names;
}

// init({ gpuBackend, pluginDir, vramBudgetBytes, deviceIndex, threads }) → Promise<void>
Napi::Value Plugin::Init(const Napi::CallbackInfo& info) {
    Napi::Object config = info[0].As<Napi::Object>();
    std::string gpu_backend = config.Get("gpuBackend").As<Napi::String>();
    std::string plugin_dir = config.Get("pluginDir").As<Napi::String>();
    uint64_t vram_budget = static_cast<uint64_t>(config.Get("vramBudgetBytes").As<Napi::Number>().DoubleValue());
    int32_t device_index = config.Get("deviceIndex").As<Napi::Number>().Int32Value();
    int32_t threads = config.Get("threads").As<Napi::Number>().Int32Value();
    std::shared_ptr<PluginCore> core = core_;
    return RunOffThread(
        info.Env(), core,
        [=]() {
            EngineConfig raw{};
            raw.struct_size = sizeof(raw);
            raw.device_index = device_index;
            raw.gpu_backend = gpu_backend.c_str();
            raw.plugin_dir = plugin_dir.c_str();
            raw.vram_budget_bytes = vram_budget;
            raw.n_threads = threads;
            return CallPlugin(*core, kInit, [&]() {
                int32_t rc = core->fn.init(&raw);
                core->initialized = rc == ERR_OK;
                return rc;
            });
        },
        Undefined);
}

// loadModel(path) → Promise<void>: the legacy single-model engine_load_model.
Napi::Value Plugin::LoadModel(const Napi::CallbackInfo& info) {
    std::string path = info[0].As<Napi::String>();
    std::shared_ptr<PluginCore> core = core_;
    return RunOffThread(
        info.Env(), core,
        [=]() { return CallPlugin(*core, kLoadModel, [&]() { return core->fn.load_model(path.c_str()); }); },
        Undefined);
}

// modelLoad(id, params, onProgress?: (fraction, phase) => void) → Promise<{ contextLength, vramBytes }>
Napi::Value Plugin::ModelLoad(const Napi::CallbackInfo& info) {
    std::string id = info[0].As<Napi::String>();
    auto params = std::make_shared<ModelLoadParams>(info[1].As<Napi::Object>());
    std::shared_ptr<LoadProgress> progress = LoadProgress::For(info.Env(), info[2]);
    auto loaded = std::make_shared<EngineModelInfo>();
    std::shared_ptr<PluginCore> core = core_;
    return RunOffThread(
        info.Env(), core,
        [=]() {
            EngineModelLoadParams raw = params->Raw();
            if (progress) progress->Attach(raw);
            *loaded = EngineModelInfo{};
            loaded->struct_size = sizeof(EngineModelInfo);
            CallOutcome outcome =
                CallPlugin(*core, kModelLoad, [&]() { return core->fn.model_load(id.c_str(), &raw, loaded.get()); });
            if (progress) progress->Done();
            if (outcome.ok() && loaded->context_length < 0) {
                outcome.Garbage("engine_model_load reported a negative context length (" +
                                std::to_string(loaded->context_length) + ")");
            }
            if (outcome.ok() && loaded->embedding_length < 0) {
                outcome.Garbage("engine_model_load reported a negative embedding length (" +
                                std::to_string(loaded->embedding_length) + ")");
            }
            return outcome;
        },
        [loaded](Napi::Env env) -> Napi::Value {
            Napi::Object result = Napi::Object::New(env);
            result.Set("contextLength", loaded->context_length);
            result.Set("vramBytes", static_cast<double>(loaded->vram_bytes));
            result.Set("embeddingLength", loaded->embedding_length);
            return result;
        });
}

// modelUnload(id) → Promise<void>
Napi::Value Plugin::ModelUnload(const Napi::CallbackInfo& info) {
    std::string id = info[0].As<Napi::String>();
    std::shared_ptr<PluginCore> core = core_;
    return RunOffThread(
        info.Env(), core,
        [=]() { return CallPlugin(*core, kModelUnload, [&]() { return core->fn.model_unload(id.c_str()); }); },
        Undefined);
}

// estimateVram(params) → Promise<number>
Napi::Value Plugin::EstimateVram(const Napi::CallbackInfo& info) {
    auto params = std::make_shared<ModelLoadParams>(info[0].As<Napi::Object>());
    auto bytes = std::make_shared<uint64_t>(0);
    std::shared_ptr<PluginCore> core = core_;
    return RunOffThread(
        info.Env(), core,
        [=]() {
            EngineModelLoadParams raw = params->Raw();
            return CallPlugin(*core, kEstimateVram, [&]() { return core->fn.model_estimate_vram(&raw, bytes.get()); });
        },
        [bytes](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*bytes)); });
}

// vramUsed() → number. Never blocks the JS thread: when the plugin is busy with a call that must run
// alone (any call, for a plugin that is not thread-safe), this is the value read last.
Napi::Value Plugin::VramUsed(const Napi::CallbackInfo& info) {
    PluginCore& core = *core_;
    if (core.closed) {
        ThrowHostError(info.Env(), "closed", "the engine is closed");
        return info.Env().Undefined();
    }
    bool held = core.thread_safe ? core.calls.try_lock_shared() : core.calls.try_lock();
    if (held) {
        core.RefreshVramUsed();
        if (core.thread_safe) {
            core.calls.unlock_shared();
        } else {
            core.calls.unlock();
        }
    }
    return Napi::Number::New(info.Env(), static_cast<double>(core.vram_used.load()));
}

// modelStats(id) → { running, waiting, kvCellsUsed, kvCellsTotal } | null. On the JS thread, beside any call in
// flight (engine_api.h); null while engine_init or engine_shutdown runs, and when the plugin cannot say (an
// error, or counts that make no sense: the figures are advisory, and the node then counts for itself).
Napi::Value Plugin::ModelStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    PluginCore& core = *core_;
    std::string id = info[0].As<Napi::String>();
    std::shared_lock<std::shared_mutex> lifecycle(core.lifecycle, std::try_to_lock);
    if (core.closed || core.fn.model_get_stats == nullptr || !lifecycle.owns_lock() || !core.initialized) {
        return env.Null();
    }
    EngineModelStats stats{};
    stats.struct_size = sizeof(stats);
    if (core.fn.model_get_stats(id.c_str(), &stats) != ERR_OK || stats.requests_running < 0 ||
        stats.requests_waiting < 0 || stats.kv_cells_used > stats.kv_cells_total) {
        return env.Null();
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("running", stats.requests_running);
    result.Set("waiting", stats.requests_waiting);
    result.Set("kvCellsUsed", static_cast<double>(stats.kv_cells_used));
    result.Set("kvCellsTotal", static_cast<double>(stats.kv_cells_total));
    return result;
}

// embed(id, inputs: string[], flags, embeddingLength) → Promise<{ embeddings: Float32Array, promptTokens }>: the
// inputs' embeddings one after another, embeddingLength floats each (what engine_model_load reported).
Napi::Value Plugin::Embed(const Napi::CallbackInfo& info) {
    std::string id = info[0].As<Napi::String>();
    Napi::Array js_inputs = info[1].As<Napi::Array>();
    auto inputs = std::make_shared<std::vector<std::string>>();
    for (uint32_t i = 0; i < js_inputs.Length(); ++i) inputs->push_back(js_inputs.Get(i).As<Napi::String>());
    uint32_t flags = info[2].As<Napi::Number>().Uint32Value();
    size_t n_floats = inputs->size() * info[3].As<Napi::Number>().Uint32Value();
    auto embeddings = std::make_shared<std::vector<float>>(n_floats);
    auto result = std::make_shared<EngineEmbedResult>();
    std::shared_ptr<PluginCore> core = core_;
    return RunOffThread(
        info.Env(), core,
        [=]() {
            std::vector<const char*> texts;
            std::vector<int32_t> lengths;
            for (const std::string& input : *inputs) {
                texts.push_back(input.data());
                lengths.push_back(static_cast<int32_t>(input.size()));
            }
            EngineEmbedParams raw{};
            raw.struct_size = sizeof(raw);
            raw.flags = flags;
            raw.model_id = id.c_str();
            raw.inputs = texts.data();
            raw.input_lens = lengths.data();
            raw.n_inputs = static_cast<int32_t>(texts.size());
            *result = EngineEmbedResult{};
            result->struct_size = sizeof(EngineEmbedResult);
            CallOutcome outcome = CallPlugin(*core, kEmbed, [&]() {
                return core->fn.embed(&raw, embeddings->data(), embeddings->size(), result.get());
            });
            if (outcome.ok() && result->prompt_tokens < 0) {
                outcome.Garbage("engine_embed reported a negative token count (" +
                                std::to_string(result->prompt_tokens) + ")");
            }
            return outcome;
        },
        [embeddings, result](Napi::Env env) -> Napi::Value {
            Napi::Object value = Napi::Object::New(env);
            Napi::Float32Array floats = Napi::Float32Array::New(env, embeddings->size());
            std::copy(embeddings->begin(), embeddings->end(), floats.Data());
            value.Set("embeddings", floats);
            value.Set("promptTokens", result->prompt_tokens);
            return value;
        });
}

// shutdown() → Promise<void>
Napi::Value Plugin::Shutdown(const Napi::CallbackInfo& info) {
    std::shared_ptr<PluginCore> core = core_;
    return RunOffThread(
        info.Env(), core,
        [=]() {
            return CallPlugin(*core, kShutdown, [&]() {
                core->initialized = false;
                core->fn.shutdown();
                return static_cast<int32_t>(ERR_OK);  // engine_shutdown cannot fail
            });
        },
        Undefined);
}

// close(): unloads the library. src/engine.ts has already waited for every call and generation.
Napi::Value Plugin::Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core_->closed) return env.Undefined();
    if (core_->in_flight > 0) {
        // Unloading now would pull code out from under a running thread.
        ThrowHostError(env, "internal", "cannot unload the plugin while calls into it are in flight");
        return env.Undefined();
    }
    core_->closed = true;
    core_->library.Close();
    return env.Undefined();
}
