// my_engine.c
#include "engine_api.h"

static EngineInfo info = {
    .abi_version = ENGINE_ABI_VERSION,
    .engine_id = "my_engine",
    .version = "1.0.0"
};

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API int engine_init(EngineConfig* config) {
    // initialise the engine
    return ERR_OK;
}

ENGINE_API int engine_load_model(const char* model_path) {
    // load the model
    return ERR_OK;
}

ENGINE_API int engine_generate(
    const char* prompt,
    TokenResult** results
) {
    // generate the tokens
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {
    // free everything
}
