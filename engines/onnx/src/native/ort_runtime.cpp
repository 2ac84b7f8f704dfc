#include "ort_runtime.h"

#if defined(_WIN32)
#  include <windows.h>
#else
#  include <dlfcn.h>
#endif

#include "errors.h"

#if defined(_WIN32)
const char* const k_onnxruntime_library = "onnxruntime.dll";
#elif defined(__APPLE__)
const char* const k_onnxruntime_library = "libonnxruntime.1.dylib";
#else
const char* const k_onnxruntime_library = "libonnxruntime.so.1";
#endif

namespace {

using GetApiBase = const OrtApiBase*(ORT_API_CALL*)();
// dml_provider_factory.h's one function, which the header set does not carry.
using AppendDirectML = OrtStatus*(ORT_API_CALL*)(OrtSessionOptions*, int);

void* symbol(void* library, const char* name) {
#if defined(_WIN32)
    return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(library), name));
#else
    return dlsym(library, name);
#endif
}

}  // namespace

void OrtRuntime::open(const std::string& plugin_dir) {
    const std::string path = plugin_dir + "/" + k_onnxruntime_library;
#if defined(_WIN32)
    // By full path, and its DirectML.dll from the same folder: Windows carries older copies of both in System32.
    const int wide_length = MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, nullptr, 0);
    std::wstring wide(static_cast<size_t>(wide_length), L'\0');
    MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, wide.data(), wide_length);
    library =
        LoadLibraryExW(wide.c_str(), nullptr, LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS);
    if (library == nullptr) {
        throw EngineError(ERR_UNSUPPORTED,
                          "cannot load " + path + " (Windows error " + std::to_string(GetLastError()) + ")");
    }
#else
    library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
        throw EngineError(ERR_UNSUPPORTED, std::string("cannot load ONNX Runtime: ") + dlerror());
    }
#endif
    const auto get_api_base = reinterpret_cast<GetApiBase>(symbol(library, "OrtGetApiBase"));
    if (get_api_base == nullptr) {
        close();
        throw EngineError(ERR_UNSUPPORTED, path + " does not export OrtGetApiBase");
    }
    const OrtApiBase* base = get_api_base();
    version = base->GetVersionString();
    api = base->GetApi(ORT_API_VERSION);
    if (api == nullptr) {
        close();
        throw EngineError(ERR_UNSUPPORTED, "ONNX Runtime " + version + " does not offer C API version " +
                                               std::to_string(ORT_API_VERSION) + ", which this plugin was built for");
    }
    check(api->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "llm-node-onnx", &env), "creating ONNX Runtime's environment");
#if defined(ENGINE_PROVIDER_DIRECTML)
    if (symbol(library, "OrtSessionOptionsAppendExecutionProvider_DML") == nullptr) {
        close();
        throw EngineError(ERR_UNSUPPORTED, path + " has no DirectML execution provider");
    }
#endif
}

void OrtRuntime::close() {
    if (env != nullptr) {
        api->ReleaseEnv(env);
        env = nullptr;
    }
    // The library stays mapped: ONNX Runtime's thread pools and statics are not safe to unmap under a process
    // that goes on (the engine host exits after engine_shutdown anyway).
    api = nullptr;
}

void OrtRuntime::add_provider(OrtSessionOptions* options, int device_index) const {
#if defined(ENGINE_PROVIDER_DIRECTML)
    // DirectML runs one command list at a time and cannot take ONNX Runtime's memory patterns.
    check(api->DisableMemPattern(options), "configuring the session for DirectML");
    check(api->SetSessionExecutionMode(options, ORT_SEQUENTIAL), "configuring the session for DirectML");
    const auto append =
        reinterpret_cast<AppendDirectML>(symbol(library, "OrtSessionOptionsAppendExecutionProvider_DML"));
    check(append(options, device_index), "adding the DirectML execution provider");
#else
    (void)options;
    (void)device_index;
#endif
}

bool OrtRuntime::one_run_per_session() const {
#if defined(ENGINE_PROVIDER_DIRECTML)
    return true;
#else
    return false;
#endif
}

OrtMemoryInfo* OrtRuntime::create_cache_memory_info(int device_index) const {
    OrtMemoryInfo* info = nullptr;
#if defined(ENGINE_PROVIDER_DIRECTML)
    check(api->CreateMemoryInfo("DML", OrtDeviceAllocator, device_index, OrtMemTypeDefault, &info),
          "creating DirectML memory info");
#else
    (void)device_index;
    check(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &info), "creating memory info");
#endif
    return info;
}

void OrtRuntime::check(OrtStatus* status, const char* what) const {
    if (status == nullptr) {
        return;
    }
    const OrtErrorCode code = api->GetErrorCode(status);
    const std::string message = std::string(what) + ": " + api->GetErrorMessage(status);
    api->ReleaseStatus(status);
    switch (code) {
        case ORT_NO_SUCHFILE:
            throw EngineError(ERR_MODEL_NOT_FOUND, message);
        case ORT_INVALID_PROTOBUF:
        case ORT_NO_MODEL:
            throw EngineError(ERR_MODEL_CORRUPT, message);
        case ORT_INVALID_GRAPH:
        case ORT_NOT_IMPLEMENTED:
            throw EngineError(ERR_UNSUPPORTED, message);
        default:
            throw EngineError(ERR_INTERNAL, message);
    }
}
