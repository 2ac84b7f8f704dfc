/*
 * echo — the deterministic streaming test engine. It implements every optional entry point, declares
 * itself thread-safe, and is what the binding's, registry's and server's tests and the host benchmark
 * drive instead of a real model.
 *
 * Models: engine_model_load accepts any path that exists (ERR_MODEL_NOT_FOUND otherwise). Context length
 * = params->context_length, or 4096 when 0. VRAM held and estimated = the file's size; a load over
 * params->vram_budget_bytes fails with ERR_OUT_OF_MEMORY. engine_load_model loads the default model.
 *
 * Generation: the prompt splits into word tokens, each a run of spaces then a run of non-spaces
 * ("Hello big world" -> "Hello", " big", " world"). The engine emits them back, in order, then stops
 * (ENGINE_FINISH_STOP). With ENGINE_GENERATE_IGNORE_EOS it goes on with counter tokens " 1", " 2", ...
 * Generation ends with ENGINE_FINISH_LENGTH after max_tokens tokens or when prompt + completion fill
 * the context; a prompt longer than the context fails with ERR_CONTEXT_OVERFLOW. Stop strings end it
 * with ENGINE_FINISH_STOP, emitting only the text before the stop string. Token ids count from 0;
 * logprobs are always ECHO_LOGPROB. Sampling parameters are ignored: the output is always the same.
 *
 * Embeddings (engine_embed): every model gives ECHO_EMBEDDING_LENGTH floats per input, component i counting the
 * input's bytes whose value is i modulo ECHO_EMBEDDING_LENGTH; an input takes as many tokens as its words.
 *
 * Stats (engine_model_get_stats): every generation in flight is running, none waits; each holds one KV
 * cell per prompt token and per token emitted, of context_length x n_parallel cells (n_parallel 1 when 0).
 *
 * It emits as fast as it can (the benchmark: a short prompt, IGNORE_EOS, a large max_tokens and
 * context length), unless built with a delay.
 *
 * Compile-time options:
 *   -DENGINE_ID=name          the engine id it reports (default: echo)
 *   -DECHO_TOKEN_DELAY_US=n   sleep n microseconds before each token: the slow engine for cancellation tests
 *   -DECHO_LOAD_DELAY_US=n    sleep n microseconds in engine_model_load: a load a client can walk away from,
 *                            or watch (it reports "weights" 0, 0.25, ... 1 across the delay, then "context" 1)
 *   -DECHO_ESTIMATE_DELAY_US=n  sleep n microseconds in engine_model_estimate_vram: an engine slow to admit a model
 *   -DECHO_AS_OF_0_1_0        the plugin as it was before load progress, so that it compiles against the header of
 *                            @llm-node/abi-native 0.1.0 (test-plugins/abi-0.1.0/): the ABI growth test
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_plugin.h"

#ifndef ENGINE_ID
#  define ENGINE_ID echo
#endif
#define ECHO_EMBEDDING_LENGTH 8

#ifndef ECHO_LOAD_DELAY_US
#  define ECHO_LOAD_DELAY_US 0
#endif
#ifndef ECHO_ESTIMATE_DELAY_US
#  define ECHO_ESTIMATE_DELAY_US 0
#endif
#ifndef ECHO_TOKEN_DELAY_US
#  define ECHO_TOKEN_DELAY_US 0
#endif
#define ECHO_DEFAULT_CONTEXT 4096
#define ECHO_LOGPROB (-0.25f)
#define ECHO_MAX_MODELS 64
#define ECHO_MAX_ID 128

static EngineInfo info = {
    .abi_version = ENGINE_ABI_VERSION,
    .engine_id = TP_STR(ENGINE_ID),
    .version = "1.0.0",
    .struct_size = sizeof(EngineInfo),
    .flags = ENGINE_FLAG_THREAD_SAFE,
};

typedef struct EchoModel {
    int loaded;
    char id[ECHO_MAX_ID]; /* "" for the default model of engine_load_model */
    int32_t context_length;
    int32_t n_parallel;
    uint64_t vram_bytes;
    volatile int64_t running; /* generations in flight */
    volatile int64_t kv_used; /* their prompt tokens and tokens emitted */
} EchoModel;

static int initialized;
static tp_mutex models_lock = TP_MUTEX_INIT;
static EchoModel models[ECHO_MAX_MODELS];

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API const char* engine_get_last_error(void) {
    return tp_last_error;
}

ENGINE_API int engine_init(EngineConfig* config) {
    (void)config;
    initialized = 1;
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {
    memset(models, 0, sizeof models);
    initialized = 0;
}

/* ---- Models ---------------------------------------------------------------------------------- */

/* The size of the file at `path` into *bytes (0 for a folder); ERR_MODEL_NOT_FOUND if there is none. */
static int32_t model_size(const char* path, uint64_t* bytes) {
    struct stat st;
    if (path == NULL || stat(path, &st) != 0)
        return tp_fail(ERR_MODEL_NOT_FOUND, "no model at %s", path ? path : "(null)");
    *bytes = (st.st_mode & S_IFMT) == S_IFREG ? (uint64_t)st.st_size : 0;
    return ERR_OK;
}

/* The slot of model `id` ("" = the default model), or NULL. Call with models_lock held. */
static EchoModel* find_model(const char* id) {
    for (int i = 0; i < ECHO_MAX_MODELS; i++) {
        if (models[i].loaded && strcmp(models[i].id, id) == 0) return &models[i];
    }
    return NULL;
}

static int32_t load(const char* id, const char* path, int32_t context_length, int32_t n_parallel, uint64_t budget,
                    EchoModel* loaded) {
    if (!initialized) return tp_fail(ERR_NOT_INITIALIZED, "engine_init has not been called");
    if (strlen(id) >= ECHO_MAX_ID)
        return tp_fail(ERR_INVALID_ARGUMENT, "model id longer than %d bytes", ECHO_MAX_ID - 1);
    uint64_t bytes = 0;
    int32_t rc = model_size(path, &bytes);
    if (rc != ERR_OK) return rc;
    if (budget != 0 && bytes > budget) {
        return tp_fail(ERR_OUT_OF_MEMORY, "model needs %llu bytes but the budget is %llu", (unsigned long long)bytes,
                       (unsigned long long)budget);
    }
    tp_lock(&models_lock);
    EchoModel* slot = find_model(id);
    if (slot != NULL && id[0] != '\0') {
        tp_unlock(&models_lock);
        return tp_fail(ERR_INVALID_ARGUMENT, "model '%s' is already loaded", id);
    }
    for (int i = 0; slot == NULL && i < ECHO_MAX_MODELS; i++) {
        if (!models[i].loaded) slot = &models[i];
    }
    if (slot == NULL) {
        tp_unlock(&models_lock);
        return tp_fail(ERR_OUT_OF_MEMORY, "already holding %d models", ECHO_MAX_MODELS);
    }
    slot->loaded = 1;
    strcpy(slot->id, id);
    slot->context_length = context_length > 0 ? context_length : ECHO_DEFAULT_CONTEXT;
    slot->n_parallel = n_parallel > 0 ? n_parallel : 1;
    slot->vram_bytes = bytes;
    *loaded = *slot;
    tp_unlock(&models_lock);
    return ERR_OK;
}

ENGINE_API int engine_load_model(const char* model_path) {
    EchoModel loaded;
    return load("", model_path, 0, 1, 0, &loaded);
}

/* Progress as a real load reports it: the "weights" in four steps (the load delay spread over them), then the
   "context". */
static void report_load_progress(const EngineModelLoadParams* params) {
#ifdef ECHO_AS_OF_0_1_0
    (void)params;
    if (ECHO_LOAD_DELAY_US > 0) tp_sleep_us(ECHO_LOAD_DELAY_US);
#else
    EngineLoadProgressCallback progress =
        TP_HAS_FIELD(params, EngineModelLoadParams, progress_user_data) ? params->progress : NULL;
    for (int step = 0; step <= 4; step++) {
        if (progress != NULL) progress(params->progress_user_data, (float)step / 4, "weights");
        if (step < 4 && ECHO_LOAD_DELAY_US > 0) tp_sleep_us(ECHO_LOAD_DELAY_US / 4);
    }
    if (progress != NULL) progress(params->progress_user_data, 1.0f, "context");
#endif
}

ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params,
                                     EngineModelInfo* info_out) {
    if (model_id == NULL || model_id[0] == '\0') return tp_fail(ERR_INVALID_ARGUMENT, "empty model id");
    report_load_progress(params);
    EchoModel loaded;
    int32_t n_parallel = TP_HAS_FIELD(params, EngineModelLoadParams, n_parallel) ? params->n_parallel : 0;
    int32_t rc =
        load(model_id, params->model_path, params->context_length, n_parallel, params->vram_budget_bytes, &loaded);
    if (rc != ERR_OK) return rc;
    if (TP_HAS_FIELD(info_out, EngineModelInfo, context_length)) info_out->context_length = loaded.context_length;
    if (TP_HAS_FIELD(info_out, EngineModelInfo, vram_bytes)) info_out->vram_bytes = loaded.vram_bytes;
#ifndef ECHO_AS_OF_0_1_0
    if (TP_HAS_FIELD(info_out, EngineModelInfo, embedding_length)) info_out->embedding_length = ECHO_EMBEDDING_LENGTH;
#endif
    return ERR_OK;
}

ENGINE_API int32_t engine_model_unload(const char* model_id) {
    tp_lock(&models_lock);
    EchoModel* slot = model_id != NULL && model_id[0] != '\0' ? find_model(model_id) : NULL;
    if (slot != NULL) memset(slot, 0, sizeof *slot);
    tp_unlock(&models_lock);
    return slot != NULL ? ERR_OK
                        : tp_fail(ERR_INVALID_ARGUMENT, "model '%s' is not loaded", model_id ? model_id : "(null)");
}

ENGINE_API int32_t engine_model_estimate_vram(const EngineModelLoadParams* params, uint64_t* bytes) {
    if (ECHO_ESTIMATE_DELAY_US > 0) tp_sleep_us(ECHO_ESTIMATE_DELAY_US);
    return model_size(params->model_path, bytes);
}

ENGINE_API uint64_t engine_get_vram_used(void) {
    uint64_t used = 0;
    tp_lock(&models_lock);
    for (int i = 0; i < ECHO_MAX_MODELS; i++) used += models[i].vram_bytes;
    tp_unlock(&models_lock);
    return used;
}

ENGINE_API int32_t engine_model_get_stats(const char* model_id, EngineModelStats* stats) {
    tp_lock(&models_lock);
    EchoModel* model = model_id != NULL && model_id[0] != '\0' ? find_model(model_id) : NULL;
    if (model != NULL) {
        if (TP_HAS_FIELD(stats, EngineModelStats, requests_running))
            stats->requests_running = (int32_t)tp_atomic_load(&model->running);
        if (TP_HAS_FIELD(stats, EngineModelStats, requests_waiting)) stats->requests_waiting = 0;
        if (TP_HAS_FIELD(stats, EngineModelStats, kv_cells_used))
            stats->kv_cells_used = (uint64_t)tp_atomic_load(&model->kv_used);
        if (TP_HAS_FIELD(stats, EngineModelStats, kv_cells_total)) {
            stats->kv_cells_total = (uint64_t)model->context_length * (uint64_t)model->n_parallel;
        }
    }
    tp_unlock(&models_lock);
    return model != NULL ? ERR_OK
                         : tp_fail(ERR_MODEL_NOT_LOADED, "model '%s' is not loaded", model_id ? model_id : "(null)");
}

/* ---- Tokens ---------------------------------------------------------------------------------- */

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The next word token of `text` from *pos: a run of spaces, then a run of non-spaces. */
static size_t next_word(const char* text, size_t len, size_t* pos) {
    size_t start = *pos;
    while (*pos < len && is_space(text[*pos])) (*pos)++;
    while (*pos < len && !is_space(text[*pos])) (*pos)++;
    return *pos - start;
}

static int32_t count_words(const char* text, size_t len) {
    int32_t n = 0;
    for (size_t pos = 0; next_word(text, len, &pos) > 0;) n++;
    return n;
}

/* Writes " <n>" into buf (at least 13 bytes) and returns its length. */
static int32_t counter_token(char* buf, int32_t n) {
    char digits[11];
    int32_t k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    buf[0] = ' ';
    for (int32_t i = 0; i < k; i++) buf[1 + i] = digits[k - 1 - i];
    return k + 1;
}

/*
 * Emits tokens through the callback. With stop strings, text that might be the start of a stop string
 * is held back until the next tokens show whether it is; text from a stop string on is never emitted.
 */
typedef struct HeldToken {
    int32_t id;
    size_t start, len; /* within Emitter.held */
} HeldToken;

typedef struct Emitter {
    EngineTokenCallback on_token;
    void* user_data;
    float logprob;
    const char* const* stop;
    int32_t n_stop;
    char* held;
    size_t held_len, held_cap;
    HeldToken* tokens;
    size_t n_tokens, tokens_cap;
    int stopped;   /* a stop string was met */
    int cancelled; /* the callback asked to stop */
} Emitter;

static void emit_now(Emitter* em, int32_t id, const char* text, size_t len) {
    if (em->cancelled) return;
    TokenResult token = {id, (int32_t)len, text, em->logprob};
    if (em->on_token(em->user_data, &token) != 0) em->cancelled = 1;
}

/* Emits the first n held tokens and forgets them. */
static void emit_held(Emitter* em, size_t n) {
    for (size_t i = 0; i < n; i++) emit_now(em, em->tokens[i].id, em->held + em->tokens[i].start, em->tokens[i].len);
    size_t cut = n < em->n_tokens ? em->tokens[n].start : em->held_len;
    memmove(em->held, em->held + cut, em->held_len - cut);
    em->held_len -= cut;
    memmove(em->tokens, em->tokens + n, (em->n_tokens - n) * sizeof *em->tokens);
    em->n_tokens -= n;
    for (size_t i = 0; i < em->n_tokens; i++) em->tokens[i].start -= cut;
}

/* Where stop string `s` first occurs in the held text, or -1. */
static long find_stop(const Emitter* em, const char* s) {
    size_t n = strlen(s);
    if (n == 0 || n > em->held_len) return -1;
    for (size_t i = 0; i + n <= em->held_len; i++) {
        if (memcmp(em->held + i, s, n) == 0) return (long)i;
    }
    return -1;
}

/* Whether the held text from `at` on is the beginning of some stop string. */
static int starts_stop(const Emitter* em, size_t at) {
    size_t n = em->held_len - at;
    for (int32_t i = 0; i < em->n_stop; i++) {
        if (strlen(em->stop[i]) > n && memcmp(em->held + at, em->stop[i], n) == 0) return 1;
    }
    return 0;
}

static int32_t push_token(Emitter* em, int32_t id, const char* text, size_t len) {
    if (em->n_stop == 0) {
        emit_now(em, id, text, len);
        return ERR_OK;
    }
    if (em->held_len + len > em->held_cap) {
        size_t cap = (em->held_len + len) * 2;
        char* held = realloc(em->held, cap);
        if (held == NULL) return tp_fail(ERR_INTERNAL, "out of host memory");
        em->held = held;
        em->held_cap = cap;
    }
    if (em->n_tokens == em->tokens_cap) {
        size_t cap = em->tokens_cap * 2 + 8;
        HeldToken* tokens = realloc(em->tokens, cap * sizeof *tokens);
        if (tokens == NULL) return tp_fail(ERR_INTERNAL, "out of host memory");
        em->tokens = tokens;
        em->tokens_cap = cap;
    }
    em->tokens[em->n_tokens++] = (HeldToken){id, em->held_len, len};
    memcpy(em->held + em->held_len, text, len);
    em->held_len += len;

    long match = -1;
    for (int32_t i = 0; i < em->n_stop; i++) {
        long at = find_stop(em, em->stop[i]);
        if (at >= 0 && (match < 0 || at < match)) match = at;
    }
    if (match >= 0) {
        size_t n = 0; /* tokens wholly before the stop string */
        while (n < em->n_tokens && em->tokens[n].start + em->tokens[n].len <= (size_t)match) n++;
        HeldToken cut = em->tokens[n];
        emit_held(em, n);
        size_t before = (size_t)match - cut.start; /* the part of the cut token before the stop string */
        if (before > 0) emit_now(em, cut.id, em->held, before);
        em->stopped = 1;
        return ERR_OK;
    }
    size_t keep_from = em->held_len; /* the earliest point that may begin a stop string */
    for (size_t at = 0; at < em->held_len; at++) {
        if (starts_stop(em, at)) {
            keep_from = at;
            break;
        }
    }
    size_t n = 0;
    while (n < em->n_tokens && em->tokens[n].start + em->tokens[n].len <= keep_from) n++;
    emit_held(em, n);
    return ERR_OK;
}

ENGINE_API int32_t engine_generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token,
                                          void* user_data, EngineGenerateResult* result) {
    if (!initialized) return tp_fail(ERR_NOT_INITIALIZED, "engine_init has not been called");
    const char* model_id = params->model_id != NULL ? params->model_id : "";
    tp_lock(&models_lock);
    EchoModel* model = find_model(model_id);
    int32_t context_length = model != NULL ? model->context_length : 0;
    tp_unlock(&models_lock);
    if (model == NULL) {
        return params->model_id != NULL ? tp_fail(ERR_MODEL_NOT_LOADED, "model '%s' is not loaded", model_id)
                                        : tp_fail(ERR_MODEL_NOT_LOADED, "no model loaded");
    }

    const char* prompt = params->prompt;
    size_t prompt_len = params->prompt_len > 0 ? (size_t)params->prompt_len : 0;
    int32_t prompt_tokens = count_words(prompt, prompt_len);
    if (prompt_tokens > context_length) {
        return tp_fail(ERR_CONTEXT_OVERFLOW, "the prompt has %d tokens but the context holds %d", prompt_tokens,
                       context_length);
    }
    /* The model stays put while a generation is in flight (the host never unloads it then). */
    tp_atomic_add(&model->running, 1);
    tp_atomic_add(&model->kv_used, prompt_tokens);
    int32_t limit = context_length - prompt_tokens;
    if (params->max_tokens > 0 && params->max_tokens < limit) limit = params->max_tokens;
    int ignore_eos = (params->flags & ENGINE_GENERATE_IGNORE_EOS) != 0;

    Emitter em = {
        .on_token = on_token,
        .user_data = user_data,
        .logprob = (params->flags & ENGINE_GENERATE_LOGPROBS) ? ECHO_LOGPROB : 0.0f,
        .stop = params->stop,
        .n_stop = params->stop != NULL ? params->n_stop : 0,
    };
    int32_t completion = 0;
    int32_t finish = ENGINE_FINISH_LENGTH;
    int32_t rc = ERR_OK;
    size_t pos = 0;
    char counter[16];
    for (;;) {
        if (em.cancelled || em.stopped || rc != ERR_OK) break;
        if (completion >= limit) break;
        const char* text;
        size_t len;
        size_t start = pos;
        if ((len = next_word(prompt, prompt_len, &pos)) > 0) {
            text = prompt + start;
        } else if (ignore_eos) {
            text = counter;
            len = (size_t)counter_token(counter, completion + 1);
        } else {
            finish = ENGINE_FINISH_STOP; /* the echo's end of generation */
            break;
        }
        if (ECHO_TOKEN_DELAY_US > 0) tp_sleep_us(ECHO_TOKEN_DELAY_US);
        tp_atomic_add(&model->kv_used, 1);
        rc = push_token(&em, completion, text, len);
        completion++;
    }
    tp_atomic_add(&model->kv_used, -(int64_t)(prompt_tokens + completion));
    tp_atomic_add(&model->running, -1);
    if (rc == ERR_OK && !em.stopped) emit_held(&em, em.n_tokens); /* no stop string came: release the rest */
    free(em.held);
    free(em.tokens);
    if (rc != ERR_OK) return rc;

    if (em.cancelled) {
        finish = ENGINE_FINISH_CANCELLED;
    } else if (em.stopped) {
        finish = ENGINE_FINISH_STOP;
    }
    if (TP_HAS_FIELD(result, EngineGenerateResult, finish_reason)) result->finish_reason = finish;
    if (TP_HAS_FIELD(result, EngineGenerateResult, prompt_tokens)) result->prompt_tokens = prompt_tokens;
    if (TP_HAS_FIELD(result, EngineGenerateResult, completion_tokens)) result->completion_tokens = completion;
    return ERR_OK;
}

/* The legacy whole-completion call: the prompt's word tokens, valid until the next call. */
static char* legacy_text;
static TokenResult* legacy_tokens;

#ifndef ECHO_AS_OF_0_1_0
ENGINE_API int32_t engine_embed(const EngineEmbedParams* params, float* embeddings, size_t n_floats,
                                EngineEmbedResult* result) {
    if (params == NULL || params->n_inputs < 0 ||
        (params->n_inputs > 0 && (params->inputs == NULL || params->input_lens == NULL)))
        return tp_fail(ERR_INVALID_ARGUMENT, "engine_embed needs its inputs");
    if (n_floats < (size_t)params->n_inputs * ECHO_EMBEDDING_LENGTH)
        return tp_fail(ERR_INVALID_ARGUMENT, "%zu floats hold fewer than %d embeddings", n_floats, params->n_inputs);
    tp_lock(&models_lock);
    int loaded = params->model_id != NULL && params->model_id[0] != '\0' && find_model(params->model_id) != NULL;
    tp_unlock(&models_lock);
    if (!loaded)
        return tp_fail(ERR_MODEL_NOT_LOADED, "model '%s' is not loaded",
                       params->model_id ? params->model_id : "(null)");
    int32_t tokens = 0;
    for (int32_t i = 0; i < params->n_inputs; i++) {
        const unsigned char* text = (const unsigned char*)params->inputs[i];
        if (params->input_lens[i] <= 0) return tp_fail(ERR_INVALID_ARGUMENT, "input %d is empty", i);
        float* row = embeddings + (size_t)i * ECHO_EMBEDDING_LENGTH;
        memset(row, 0, ECHO_EMBEDDING_LENGTH * sizeof *row);
        for (int32_t b = 0; b < params->input_lens[i]; b++) row[text[b] % ECHO_EMBEDDING_LENGTH] += 1.0f;
        tokens += count_words(params->inputs[i], (size_t)params->input_lens[i]);
    }
    if (TP_HAS_FIELD(result, EngineEmbedResult, prompt_tokens)) result->prompt_tokens = tokens;
    return ERR_OK;
}
#endif

ENGINE_API int engine_generate(const char* prompt, TokenResult** results) {
    if (!initialized) return tp_fail(ERR_NOT_INITIALIZED, "engine_init has not been called");
    size_t len = strlen(prompt);
    int32_t n = count_words(prompt, len);
    free(legacy_text);
    free(legacy_tokens);
    legacy_text = malloc(len + 1);
    legacy_tokens = malloc(((size_t)n + 1) * sizeof *legacy_tokens);
    if (legacy_text == NULL || legacy_tokens == NULL) return tp_fail(ERR_INTERNAL, "out of host memory");
    memcpy(legacy_text, prompt, len + 1);
    size_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t start = pos;
        size_t word = next_word(legacy_text, len, &pos);
        legacy_tokens[i] = (TokenResult){i, (int32_t)word, legacy_text + start, 0.0f};
    }
    legacy_tokens[n] = (TokenResult){-1, 0, NULL, 0.0f};
    *results = legacy_tokens;
    return ERR_OK;
}
