/*
 * legacy — only the five required entry points, like the plugin guide's minimal plugin, and no
 * engine_get_last_error, so the host explains failures itself. engine_load_model needs an existing
 * file (ERR_MODEL_NOT_FOUND); engine_generate needs a loaded model (ERR_MODEL_NOT_LOADED) and returns
 * the prompt's words (" "-separated, each with its leading space) — except for the prompt "garbage",
 * which returns a token with text_len -1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_api.h"

static EngineInfo info = {.abi_version = ENGINE_ABI_VERSION, .engine_id = "legacy", .version = "0.9.0"};
static int model_loaded;
static char* text;          /* the last prompt, which the tokens point into */
static TokenResult* tokens; /* valid until the next call */

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API int engine_init(EngineConfig* config) {
    (void)config;
    return ERR_OK;
}

ENGINE_API int engine_load_model(const char* model_path) {
    FILE* file = fopen(model_path, "rb");
    if (file == NULL) return ERR_MODEL_NOT_FOUND;
    fclose(file);
    model_loaded = 1;
    return ERR_OK;
}

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    if (!model_loaded) return ERR_MODEL_NOT_LOADED;
    size_t len = strlen(prompt);
    free(text);
    free(tokens);
    text = malloc(len + 1);
    tokens = malloc((len + 2) * sizeof *tokens); /* at most one token per byte, and the end */
    if (text == NULL || tokens == NULL) return ERR_INTERNAL;
    memcpy(text, prompt, len + 1);
    int32_t n = 0;
    if (strcmp(prompt, "garbage") == 0) {
        tokens[n++] = (TokenResult){0, -1, text, 0.0f};
    } else {
        for (size_t start = 0, i = 0; i <= len; i++) {
            if (i == len || (i > start && text[i] == ' ')) {
                if (i > start) {
                    tokens[n] = (TokenResult){n, (int32_t)(i - start), text + start, 0.0f};
                    n++;
                }
                start = i;
            }
        }
    }
    tokens[n] = (TokenResult){-1, 0, NULL, 0.0f};
    *results = tokens;
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {
    free(text);
    free(tokens);
    text = NULL;
    tokens = NULL;
    model_loaded = 0;
}
