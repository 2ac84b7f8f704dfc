/*
 * failing — fails with a message wherever it can: engine_init for any device but 0 (ERR_UNSUPPORTED),
 * and every model load (ERR_MODEL_CORRUPT), explained through engine_get_last_error.
 */
#include "test_plugin.h"

static EngineInfo info = {.abi_version = ENGINE_ABI_VERSION, .engine_id = "failing", .version = "1.0.0"};

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API const char* engine_get_last_error(void) {
    return tp_last_error;
}

ENGINE_API int engine_init(EngineConfig* config) {
    if (config->device_index != 0) {
        return tp_fail(ERR_UNSUPPORTED, "device %d does not exist: this engine drives only device 0",
                       config->device_index);
    }
    return ERR_OK;
}

ENGINE_API int engine_load_model(const char* model_path) {
    return tp_fail(ERR_MODEL_CORRUPT, "%s: not a model file (bad magic)", model_path);
}

ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params,
                                     EngineModelInfo* info_out) {
    (void)info_out;
    return tp_fail(ERR_MODEL_CORRUPT, "%s: not a model file (bad magic) for model '%s'", params->model_path, model_id);
}

ENGINE_API int32_t engine_model_unload(const char* model_id) {
    return tp_fail(ERR_INVALID_ARGUMENT, "model '%s' is not loaded", model_id);
}

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    (void)prompt;
    (void)results;
    return tp_fail(ERR_MODEL_NOT_LOADED, "no model loaded");
}

ENGINE_API void engine_shutdown(void) {}
