/*
 * unsafe — not thread-safe (no ENGINE_FLAG_THREAD_SAFE), and it checks: every entry point but
 * engine_get_info and engine_get_last_error notes whether it was entered while another call was still in
 * flight, and holds on for a moment to make such an overlap likely. engine_generate_stream (five tokens
 * "tok", 2 ms apart) fails with ERR_INTERNAL once any overlap was seen. engine_model_get_stats, which the
 * host calls beside anything, reports the generations in flight as running and does not count as a call.
 * Built with -DCLAIM_THREAD_SAFE it sets the flag, so the host stops serialising and the check fires:
 * the test of the test.
 */
#include "test_plugin.h"

#ifdef CLAIM_THREAD_SAFE
#  define UNSAFE_FLAGS ENGINE_FLAG_THREAD_SAFE
#else
#  define UNSAFE_FLAGS 0
#endif

static EngineInfo info = {
    .abi_version = ENGINE_ABI_VERSION,
    .engine_id = "unsafe",
    .version = "1.0.0",
    .struct_size = sizeof(EngineInfo),
    .flags = UNSAFE_FLAGS,
};

static tp_mutex lock = TP_MUTEX_INIT;
static int in_call;    /* calls in flight now */
static int generating; /* engine_generate_stream calls in flight */
static int overlaps;   /* calls that began while another was in flight */

static void enter(void) {
    tp_lock(&lock);
    if (in_call++ > 0) overlaps++;
    tp_unlock(&lock);
}

static void leave(void) {
    tp_sleep_us(1000);
    tp_lock(&lock);
    in_call--;
    tp_unlock(&lock);
}

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API const char* engine_get_last_error(void) {
    return tp_last_error;
}

ENGINE_API int engine_init(EngineConfig* config) {
    (void)config;
    enter();
    leave();
    return ERR_OK;
}

ENGINE_API int engine_load_model(const char* model_path) {
    (void)model_path;
    enter();
    leave();
    return ERR_OK;
}

ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params,
                                     EngineModelInfo* info_out) {
    (void)model_id;
    (void)params;
    enter();
    info_out->context_length = 4096;
    info_out->vram_bytes = 0;
    leave();
    return ERR_OK;
}

ENGINE_API int32_t engine_model_unload(const char* model_id) {
    (void)model_id;
    enter();
    leave();
    return ERR_OK;
}

ENGINE_API int32_t engine_model_estimate_vram(const EngineModelLoadParams* params, uint64_t* bytes) {
    (void)params;
    enter();
    *bytes = 0;
    leave();
    return ERR_OK;
}

ENGINE_API uint64_t engine_get_vram_used(void) {
    enter();
    leave();
    return 0;
}

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    (void)prompt;
    (void)results;
    enter();
    leave();
    return ERR_OK;
}

ENGINE_API int32_t engine_generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token,
                                          void* user_data, EngineGenerateResult* result) {
    (void)params;
    enter();
    tp_lock(&lock);
    generating++;
    tp_unlock(&lock);
    int32_t emitted = 0;
    int32_t finish = ENGINE_FINISH_STOP;
    for (; emitted < 5; emitted++) {
        tp_sleep_us(2000);
        TokenResult token = {emitted, 3, "tok", 0.0f};
        if (on_token(user_data, &token) != 0) {
            finish = ENGINE_FINISH_CANCELLED;
            break;
        }
    }
    tp_lock(&lock);
    generating--;
    tp_unlock(&lock);
    leave();
    tp_lock(&lock);
    int seen = overlaps;
    tp_unlock(&lock);
    if (seen > 0)
        return tp_fail(ERR_INTERNAL, "overlapping calls: %d entry points were entered while another call was in flight",
                       seen);
    result->finish_reason = finish;
    result->prompt_tokens = 1;
    result->completion_tokens = emitted;
    return ERR_OK;
}

ENGINE_API int32_t engine_model_get_stats(const char* model_id, EngineModelStats* stats) {
    (void)model_id;
    tp_lock(&lock);
    stats->requests_running = generating;
    tp_unlock(&lock);
    stats->requests_waiting = 0;
    stats->kv_cells_used = 0;
    stats->kv_cells_total = 0;
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {
    enter();
    leave();
}
