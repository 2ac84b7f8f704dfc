/*
 * The plugin the discovery benchmark copies into 500 folders. One compiled binary serves every copy: it
 * reads its engine id from where it was loaded (<engines>/<id>/<backend>/libbench_engine.so), so each
 * copy matches its own manifest. Copies, not links: the dynamic loader shares one handle between paths
 * that name the same file, and the benchmark wants 500 real opens.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include "engine_api.h"

static char engine_id[256];
static EngineInfo info = {ENGINE_ABI_VERSION, engine_id, "1.0.0", sizeof(EngineInfo), 0};

/* The folder name two levels above the library: ".../<id>/<backend>/lib.so" -> "<id>". */
static void read_id_from_path(void) {
    Dl_info where;
    if (!dladdr((void*)&engine_get_info, &where) || where.dli_fname == NULL) return;
    char path[4096];
    strncpy(path, where.dli_fname, sizeof path - 1);
    path[sizeof path - 1] = '\0';
    for (int cut = 0; cut < 2; cut++) {
        char* slash = strrchr(path, '/');
        if (slash == NULL) return;
        *slash = '\0';
    }
    const char* name = strrchr(path, '/');
    strncpy(engine_id, name ? name + 1 : path, sizeof engine_id - 1);
}

ENGINE_API EngineInfo* engine_get_info(void) {
    if (engine_id[0] == '\0') read_id_from_path();
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

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    (void)prompt;
    *results = NULL;
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {}
