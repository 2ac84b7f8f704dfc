// An opened engine plugin: its entry points, the lock that enforces engine_api.h's threading rules, and
// the JS class `Plugin` through which src/engine.ts drives it.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>

#include "engine_api.h"
#include "library.h"

// The plugin's entry points; an optional one is nullptr when the plugin does not export it.
struct EntryPoints {
    engine_get_info_fn get_info = nullptr;
    engine_init_fn init = nullptr;
    engine_load_model_fn load_model = nullptr;
    engine_generate_fn generate = nullptr;
    engine_shutdown_fn shutdown = nullptr;
    engine_get_last_error_fn get_last_error = nullptr;
    engine_model_load_fn model_load = nullptr;
    engine_model_unload_fn model_unload = nullptr;
    engine_model_estimate_vram_fn model_estimate_vram = nullptr;
    engine_get_vram_used_fn get_vram_used = nullptr;
    engine_generate_stream_fn generate_stream = nullptr;
    engine_model_get_stats_fn model_get_stats = nullptr;
    engine_embed_fn embed = nullptr;
};

// What the Plugin object shares with the threads that call into the plugin. Owned jointly, so that a
// thread still in flight keeps it alive whatever JS does with the Plugin object.
struct PluginCore {
    SharedLibrary library;
    EntryPoints fn;
    bool thread_safe = false;
    std::shared_mutex calls;  // see PluginCall
    // engine_model_get_stats runs beside every call but engine_init and engine_shutdown, which hold this
    // exclusively; `initialized` says whether the engine is between the two.
    std::shared_mutex lifecycle;
    bool initialized = false;            // under `lifecycle`
    std::atomic<uint64_t> vram_used{0};  // last value engine_get_vram_used returned
    std::atomic<int> in_flight{0};       // threads started and not yet settled on the JS thread
    bool closed = false;                 // touched on the JS thread only

    // The plugin's message for the call that just failed on this thread ("" when it has none). Call it
    // right after the failing call, while still holding the PluginCall.
    std::string LastError() const;
    // Re-reads engine_get_vram_used, while holding a PluginCall.
    void RefreshVramUsed();
};

// Holds the plugin for one call, as engine_api.h's "Threading" section requires: engine_init,
// engine_shutdown and the legacy engine_load_model / engine_generate run with nothing else in flight;
// every other entry point runs alone too, unless the plugin declared ENGINE_FLAG_THREAD_SAFE, in which
// case those run alongside each other.
class PluginCall {
public:
    enum Kind { kAlone, kConcurrent };
    PluginCall(PluginCore& core, Kind kind);
    ~PluginCall();
    PluginCall(const PluginCall&) = delete;
    PluginCall& operator=(const PluginCall&) = delete;

private:
    std::shared_mutex& calls_;
    bool exclusive_;
};

// How a call into the plugin went, carried from the calling thread back to JS.
struct CallOutcome {
    const char* call = "";  // the entry point, for messages
    int32_t rc = ERR_OK;    // what the plugin returned
    std::string message;    // the plugin's last error when rc != ERR_OK; the host's finding when garbage
    bool garbage = false;   // the plugin broke the ABI (a negative length, say); reported as plugin_error

    bool ok() const { return rc == ERR_OK && !garbage; }
    // The plain object src/errors.ts turns into an EngineError.
    Napi::Object ToError(Napi::Env env) const;
    // Records a failed return code and the plugin's message for it.
    void Failed(const PluginCore& core, int32_t code);
    void Garbage(std::string finding);
};

// Throws the plain error object src/errors.ts expects for a failure found by the host itself.
void ThrowHostError(Napi::Env env, const char* code, const std::string& message);

class Plugin : public Napi::ObjectWrap<Plugin> {
public:
    static Napi::Function Define(Napi::Env env);
    explicit Plugin(const Napi::CallbackInfo& info);

    const std::shared_ptr<PluginCore>& core() const { return core_; }

private:
    Napi::Value Info(const Napi::CallbackInfo& info);
    Napi::Value OptionalEntryPoints(const Napi::CallbackInfo& info);
    Napi::Value Init(const Napi::CallbackInfo& info);
    Napi::Value LoadModel(const Napi::CallbackInfo& info);
    Napi::Value ModelLoad(const Napi::CallbackInfo& info);
    Napi::Value ModelUnload(const Napi::CallbackInfo& info);
    Napi::Value EstimateVram(const Napi::CallbackInfo& info);
    Napi::Value VramUsed(const Napi::CallbackInfo& info);
    Napi::Value ModelStats(const Napi::CallbackInfo& info);
    Napi::Value Embed(const Napi::CallbackInfo& info);
    Napi::Value Shutdown(const Napi::CallbackInfo& info);
    Napi::Value Close(const Napi::CallbackInfo& info);

    std::shared_ptr<PluginCore> core_ = std::make_shared<PluginCore>();
};
