/*
 * bad_info — an engine_get_info() the host must refuse. Build with one of:
 *   -DNULL_INFO      engine_get_info returns NULL
 *   -DNULL_ID        engine_id is NULL
 *   -DNULL_VERSION   version is NULL
 */
#include <stddef.h>

#include "engine_api.h"

#ifdef NULL_ID
#  define BAD_INFO_ID NULL
#else
#  define BAD_INFO_ID "bad_info"
#endif
#ifdef NULL_VERSION
#  define BAD_INFO_VERSION NULL
#else
#  define BAD_INFO_VERSION "1.0.0"
#endif

#ifdef NULL_INFO
ENGINE_API EngineInfo* engine_get_info(void) {
    return NULL;
}
#else
static EngineInfo info = {.abi_version = ENGINE_ABI_VERSION, .engine_id = BAD_INFO_ID, .version = BAD_INFO_VERSION};

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}
#endif

ENGINE_API int engine_init(EngineConfig* config) {
    (void)config;
    return ERR_OK;
}

ENGINE_API int engine_load_model(const char* model_path) {
    (void)model_path;
    return ERR_OK;
}

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    (void)prompt;
    (void)results;
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {}
