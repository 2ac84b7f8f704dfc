/*
 * missing_symbol — does not export engine_generate, a required entry point. Built with
 * -DUNPAIRED_MODEL_LOAD it has every required entry point but exports engine_model_load without
 * engine_model_unload, which the header forbids.
 */
#include "engine_api.h"

static EngineInfo info = {.abi_version = ENGINE_ABI_VERSION, .engine_id = "missing_symbol", .version = "1.0.0"};

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API int engine_init(EngineConfig* config) {
    (void)config;
    return ERR_OK;
}

ENGINE_API int engine_load_model(const char* model_path) {
    (void)model_path;
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {}

#ifdef UNPAIRED_MODEL_LOAD
ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    (void)prompt;
    (void)results;
    return ERR_OK;
}

ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params,
                                     EngineModelInfo* info_out) {
    (void)model_id;
    (void)params;
    (void)info_out;
    return ERR_OK;
}
#endif
