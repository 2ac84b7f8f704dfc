/*
 * garbage — streams what the ABI allows only just, or not at all. The prompt picks the case:
 *   "utf8"            tokens that split characters and carry invalid bytes:
 *                     "caf" "\xC3" "\xA9 " "\xE2\x82" "\xAC" " \xFF " "end\xF0\x9F" (the text ends mid-character)
 *   "negative-length" a token with text_len -1
 *   "null-text"       a token with NULL text and text_len 4
 *   "bad-finish"      finish_reason 42
 *   "negative-count"  completion_tokens -3
 *   "bad-code"        returns 1234, an error code the header does not define, with no message
 *   "ignore-stop"     keeps calling the token callback 50 times whatever it answers, then reports STOP
 * Any other prompt: ERR_INVALID_ARGUMENT.
 * -DGARBAGE_TOKEN_DELAY_US=n sleeps n microseconds before each "utf8" and "ignore-stop" token, so that
 * each reaches JS on its own (characters split across deliveries too) and JS can answer in time.
 */
#include <string.h>

#include "test_plugin.h"

#ifndef GARBAGE_TOKEN_DELAY_US
#  define GARBAGE_TOKEN_DELAY_US 0
#endif

static EngineInfo info = {.abi_version = ENGINE_ABI_VERSION, .engine_id = "garbage", .version = "1.0.0"};

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API const char* engine_get_last_error(void) {
    return tp_last_error;
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
    (void)results;
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {}

static int is(const EngineGenerateParams* params, const char* name) {
    return (size_t)params->prompt_len == strlen(name) && memcmp(params->prompt, name, strlen(name)) == 0;
}

static int32_t emit(EngineTokenCallback on_token, void* user_data, int32_t id, const char* text, int32_t len) {
    TokenResult token = {id, len, text, -1.0f};
    return on_token(user_data, &token);
}

ENGINE_API int32_t engine_generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token,
                                          void* user_data, EngineGenerateResult* result) {
    result->finish_reason = ENGINE_FINISH_STOP;
    result->prompt_tokens = 1;
    result->completion_tokens = 1;
    if (is(params, "utf8")) {
        static const char* const pieces[] = {"caf", "\xC3", "\xA9 ", "\xE2\x82", "\xAC", " \xFF ", "end\xF0\x9F"};
        int32_t n = (int32_t)(sizeof pieces / sizeof pieces[0]);
        for (int32_t i = 0; i < n; i++) {
            if (GARBAGE_TOKEN_DELAY_US > 0) tp_sleep_us(GARBAGE_TOKEN_DELAY_US);
            if (emit(on_token, user_data, i, pieces[i], (int32_t)strlen(pieces[i])) != 0) {
                result->finish_reason = ENGINE_FINISH_CANCELLED;
                break;
            }
        }
        result->completion_tokens = n;
    } else if (is(params, "negative-length")) {
        emit(on_token, user_data, 0, "ok", 2);
        emit(on_token, user_data, 1, "oops", -1);
    } else if (is(params, "null-text")) {
        emit(on_token, user_data, 0, NULL, 4);
    } else if (is(params, "bad-finish")) {
        result->finish_reason = 42;
    } else if (is(params, "negative-count")) {
        result->completion_tokens = -3;
    } else if (is(params, "bad-code")) {
        return 1234;
    } else if (is(params, "ignore-stop")) {
        for (int32_t i = 0; i < 50; i++) {
            if (GARBAGE_TOKEN_DELAY_US > 0) tp_sleep_us(GARBAGE_TOKEN_DELAY_US);
            emit(on_token, user_data, i, "x", 1);
        }
        result->completion_tokens = 50;
    } else {
        return tp_fail(ERR_INVALID_ARGUMENT, "unknown garbage case '%.*s'", params->prompt_len, params->prompt);
    }
    return ERR_OK;
}
