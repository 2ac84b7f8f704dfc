/*
 * abi2 — reports ABI version 2. The host must refuse it after engine_get_info, before engine_init:
 * every other entry point aborts the process, so a host that goes any further fails loudly.
 */
#include <stdio.h>
#include <stdlib.h>

#include "engine_api.h"

static EngineInfo info = {.abi_version = 2, .engine_id = "abi2", .version = "2.0.0"};

static void called(const char* entry_point) {
    fprintf(stderr, "abi2: the host called %s on an ABI 2 plugin\n", entry_point);
    abort();
}

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API int engine_init(EngineConfig* config) {
    (void)config;
    called("engine_init");
    return ERR_INTERNAL;
}

ENGINE_API int engine_load_model(const char* model_path) {
    (void)model_path;
    called("engine_load_model");
    return ERR_INTERNAL;
}

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    (void)prompt;
    (void)results;
    called("engine_generate");
    return ERR_INTERNAL;
}

ENGINE_API void engine_shutdown(void) {
    called("engine_shutdown");
}
