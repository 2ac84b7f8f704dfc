// ONNX Runtime, opened from the plugin's folder at engine_init: the library ships no import library, so its
// C API is reached through the one exported function OrtGetApiBase (and, for DirectML, the provider's own).
#pragma once

#include <string>

#include "onnxruntime_c_api.h"

struct OrtRuntime {
    void* library = nullptr;
    const OrtApi* api = nullptr;
    OrtEnv* env = nullptr;
    std::string version;  // the library's own, as OrtGetApiBase reports it

    // Opens the library in `plugin_dir`; throws EngineError saying why it could not.
    void open(const std::string& plugin_dir);
    void close();

    // Adds the execution provider this plugin was built for (ENGINE_PROVIDER_DIRECTML: DirectML on adapter
    // `device_index`; otherwise the CPU provider, which every session has) and the options it needs.
    void add_provider(OrtSessionOptions* options, int device_index) const;

    // DirectML runs one Run of a session at a time (several threads may only run different sessions at once);
    // the CPU provider takes concurrent Runs.
    bool one_run_per_session() const;

    // Where the KV cache lives between steps: the DirectML device's memory, or the CPU's.
    OrtMemoryInfo* create_cache_memory_info(int device_index) const;

    // Throws EngineError for a failed call, with ONNX Runtime's message, and releases the status.
    void check(OrtStatus* status, const char* what) const;
};

// The file name of the library in the plugin's folder, as onnxruntime-node ships it.
extern const char* const k_onnxruntime_library;
