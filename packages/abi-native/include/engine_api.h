/*
 * engine_api.h — the llm-node engine plugin ABI, version 1.
 *
 * An engine plugin is a shared library (.so / .dylib / .dll) that exports the five REQUIRED entry
 * points below with C linkage. It sits beside a manifest.json in engines/<engine_id>/<gpu_backend>/.
 * The host opens it, calls engine_get_info() and refuses it unless abi_version equals the host's
 * ENGINE_ABI_VERSION, and only then calls engine_init().
 *
 * The OPTIONAL entry points (streaming, models by id, errors, VRAM, model stats, embeddings) are looked up by
 * name when the plugin is opened; a plugin exports the ones it implements and the host uses what it finds.
 *
 * How this ABI grows without breaking plugins (the promise to plugin authors):
 *   - ENGINE_ABI_VERSION changes only when an existing entry point, field or constant changes its
 *     meaning or layout. Plugins built for another version are refused, never half-loaded.
 *   - Within version 1, new features arrive as new optional entry points under new names; an existing
 *     signature never changes. A successor of an entry point gets a new name (engine_x2).
 *   - Extensible structs start with `struct_size`. Whoever fills the struct sets it to sizeof(the
 *     struct as it was compiled); the reader reads only fields that lie entirely inside struct_size and
 *     treats the rest as zero. New fields are only ever appended. Plain value structs (TokenResult)
 *     never grow.
 *   - New error codes and flags may be added; treat an unknown code as ERR_INTERNAL and ignore unknown
 *     flag bits.
 *
 * Conventions used in every comment below:
 *   [thread] who may call an entry point, from which thread, and what may overlap it.
 *   Ownership: "owned by the plugin" memory is never freed by the host; "owned by the host" memory is
 *   only valid for the duration of the call that receives it. Whoever allocates frees; nothing allocated
 *   on one side is released on the other.
 *   Strings are UTF-8. Text that may contain NUL or an incomplete UTF-8 sequence (prompts, token
 *   pieces) travels as a pointer plus a byte length; other strings are NUL-terminated.
 *   Every int32_t-returning entry point returns ERR_OK or one of the error codes below.
 *
 * Process: the node runs each plugin in an engine host process of its own and restarts it when it dies or
 * hangs (docs/plugin-guide.md, "How the node runs a plugin"); a plugin's globals are per plugin.
 * Diagnostics: a plugin may write to stdout and stderr; the node logs the lines as that engine's.
 * Network: a plugin must not open network connections (llm-node is a local node); where the platform allows,
 * the engine host denies them before the plugin is opened.
 */
#ifndef ENGINE_API_H
#define ENGINE_API_H

#include <stddef.h>
#include <stdint.h>

#define ENGINE_ABI_VERSION 1

#if defined(_WIN32)
#  define ENGINE_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#  define ENGINE_API __attribute__((visibility("default")))
#else
#  define ENGINE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * Error codes. ERR_OK is 0; every other value is a failure that the host maps to an HTTP error.
 * When an entry point fails, a plugin that exports engine_get_last_error() says why there.
 * ---------------------------------------------------------------------------------------------- */
enum EngineErrorCode {
    ERR_OK = 0,
    ERR_INVALID_ARGUMENT = 1, /* NULL where a value is needed, a value out of range, an unknown model id */
    ERR_NOT_INITIALIZED = 2,  /* called before engine_init() succeeded, or after engine_shutdown() */
    ERR_MODEL_NOT_FOUND = 3,  /* the model path does not exist or cannot be opened */
    ERR_MODEL_CORRUPT = 4,    /* the model file is truncated or malformed */
    ERR_UNSUPPORTED = 5,      /* an architecture, format or feature this engine does not support */
    ERR_OUT_OF_MEMORY = 6,    /* device memory (VRAM) or the host's budget would be exceeded */
    ERR_CONTEXT_OVERFLOW = 7, /* the prompt does not fit the model's context */
    ERR_MODEL_NOT_LOADED = 8, /* generation asked for a model id that is not loaded */
    ERR_INTERNAL = 9          /* anything else */
};

/* ------------------------------------------------------------------------------------------------
 * EngineInfo — what the plugin is. Returned by engine_get_info(), owned by the plugin, and must stay
 * valid and unchanged until the library is unloaded (a static object is the usual choice).
 * ---------------------------------------------------------------------------------------------- */

/* EngineInfo.flags bits. */
#define ENGINE_FLAG_THREAD_SAFE (1u << 0) /* see "Threading" below */
#define ENGINE_FLAG_JSON_SCHEMA (1u << 1) /* honours EngineGenerateParams.json_schema */
#define ENGINE_FLAG_LOGIT_BIAS (1u << 2)  /* honours EngineGenerateParams.logit_bias */

typedef struct EngineInfo {
    /* Base fields: every ABI 1 plugin fills these three. */
    int32_t abi_version;   /* ENGINE_ABI_VERSION as the plugin was compiled */
    const char* engine_id; /* must equal "id" in the plugin's manifest.json */
    const char* version;   /* the plugin's own version (semver), as in its manifest */

    /* Extended fields, read only when struct_size covers them. A plugin that initialises only the base
       fields (as the minimal plugin in the plugin guide does) leaves struct_size 0 and gets the defaults. */
    uint32_t struct_size; /* sizeof(EngineInfo) */
    uint32_t flags;       /* ENGINE_FLAG_* bits; default 0 */
} EngineInfo;

/*
 * Threading. Without ENGINE_FLAG_THREAD_SAFE the host makes one call into the plugin at a time (it
 * serialises every entry point; the calls may still come from different threads). With it, the plugin
 * promises that engine_generate_stream, engine_model_load, engine_model_unload,
 * engine_model_estimate_vram, engine_get_vram_used and engine_get_last_error may be called
 * concurrently from several threads, including several generations on one model. engine_init and
 * engine_shutdown are always called with nothing else in flight. engine_model_get_stats is the one
 * exception to serialising: a plugin that exports it takes calls to it alongside anything else.
 */

/* ------------------------------------------------------------------------------------------------
 * EngineConfig — filled by the host for engine_init(); owned by the host, valid only during the call.
 * ---------------------------------------------------------------------------------------------- */
typedef struct EngineConfig {
    uint32_t struct_size;       /* sizeof(EngineConfig) as the host compiled it */
    int32_t device_index;       /* which GPU of the backend to use; 0 is the first */
    const char* gpu_backend;    /* "cuda", "metal", "directml" or "cpu": the folder the plugin was loaded from */
    const char* plugin_dir;     /* absolute path of the folder holding this library and its manifest.json */
    uint64_t vram_budget_bytes; /* the most device memory the host grants this engine in all; 0 = no limit */
    int32_t n_threads;          /* CPU threads the engine may use for its own work; 0 = the plugin's choice */
} EngineConfig;

/* ------------------------------------------------------------------------------------------------
 * TokenResult — one generated token. A plain value struct: it never grows (arrays of it are walked
 * with sizeof(TokenResult)).
 * ---------------------------------------------------------------------------------------------- */
typedef struct TokenResult {
    int32_t token_id; /* the model's token id; -1 if the engine has none */
    int32_t text_len; /* number of bytes at `text`; never negative */
    const char* text; /* this token's text as UTF-8 bytes, NOT NUL-terminated. A token may end in the
                         middle of a multi-byte character that the next tokens complete: the host
                         joins the bytes of consecutive tokens before decoding them. */
    float logprob;    /* natural-log probability of this token under the sampling distribution;
                         meaningful only when the request set ENGINE_GENERATE_LOGPROBS, else 0 */
} TokenResult;

/* ================================================================================================
 * REQUIRED entry points.
 * ================================================================================================ */

/* [any thread; before and after engine_init] What the plugin is. Must not fail, allocate per call, or
   depend on engine_init. Returning NULL, or NULL engine_id/version, makes the host refuse the plugin. */
ENGINE_API EngineInfo* engine_get_info(void);

/* [once, first; nothing else in flight] Prepare the engine. `config` is never NULL. On failure the host
   unloads the library without calling engine_shutdown(). */
ENGINE_API int engine_init(EngineConfig* config);

/* [nothing else in flight] Load the model at `model_path` (NUL-terminated) as the plugin's single
   default model, replacing any earlier one. Plugins that hold several models also export
   engine_model_load(); the host then uses that instead. */
ENGINE_API int engine_load_model(const char* model_path);

/* [nothing else in flight] Generate a whole completion of the NUL-terminated `prompt` with the default
   model and the plugin's own sampling settings.
   The host sets *results to NULL before the call. On ERR_OK the plugin sets *results to an array of
   TokenResult, in order, ended by one entry whose `text` is NULL; leaving *results NULL means "no
   tokens". The array and every `text` in it are owned by the plugin and must stay valid until the next
   call into the plugin; the host copies them out at once. */
ENGINE_API int engine_generate(const char* prompt, TokenResult** results);

/* [once, last; nothing else in flight] Release everything: models, threads, device memory. The host
   calls nothing but engine_get_info() afterwards and then unloads the library. */
ENGINE_API void engine_shutdown(void);

/* ================================================================================================
 * OPTIONAL entry points, found by name when the plugin is opened.
 * ================================================================================================ */

/* ---- Errors ------------------------------------------------------------------------------------ */

/* [any thread] Why the last failing call made on THIS thread failed: a NUL-terminated UTF-8 message
   owned by the plugin, valid until the next call into the plugin on this thread. NULL or "" when there
   is nothing to say. Keep it per thread (thread_local) so that concurrent calls do not mix messages. */
ENGINE_API const char* engine_get_last_error(void);

/* ---- Models by id ------------------------------------------------------------------------------ */
/* engine_model_load and engine_model_unload come as a pair: a plugin exporting one without the other is
   refused. With them a plugin holds several models at once, each named by a host-chosen id. */

/* [the thread running engine_model_load, during that call only] How far a load has got: `fraction` from 0
   to 1, never going back within a phase; `phase` a short NUL-terminated word naming the step ("weights",
   "context", ...), owned by the plugin and read only during the call. Call it as often as is natural (the
   host passes on what changed); a plugin that never calls it loads as well, without progress. */
typedef void (*EngineLoadProgressCallback)(void* user_data, float fraction, const char* phase);

typedef struct EngineModelLoadParams {
    uint32_t struct_size;       /* sizeof(EngineModelLoadParams) as the host compiled it */
    int32_t context_length;     /* tokens of context each request may use; 0 = the model's trained length */
    const char* model_path;     /* a model file (GGUF) or folder (safetensors with config.json; onnx: model.onnx) */
    const char* format;         /* "gguf", "safetensors" or "onnx" */
    const char* quantization;   /* the quantization the host selected (e.g. "Q4_K_M"); NULL = as stored */
    uint64_t vram_budget_bytes; /* the most device memory this model may hold; fail with
                                   ERR_OUT_OF_MEMORY rather than exceed it; 0 = no limit */
    int32_t n_parallel;         /* most requests generated at once on this model; 0 = the plugin's choice */
    /* Appended in ABI 1 after the fields above: a load's progress for those waiting on it. NULL (or outside
       struct_size: a host built before it) = report nothing. Pass `progress_user_data` back unchanged. */
    EngineLoadProgressCallback progress;
    void* progress_user_data;
} EngineModelLoadParams;

typedef struct EngineModelInfo {
    uint32_t struct_size;   /* set by the host to sizeof(EngineModelInfo); the plugin fills the rest */
    int32_t context_length; /* tokens of context each request can use */
    uint64_t vram_bytes;    /* device memory the model holds now: weights, KV cache, compute buffers */
    /* Appended in ABI 1 after the fields above: floats in each of the model's embeddings (engine_embed); 0 (or
       outside struct_size: a plugin built before it) = the model gives none. */
    int32_t embedding_length;
} EngineModelInfo;

/* [see Threading] Load a model under `model_id` (NUL-terminated; unique among loaded models). `params`
   is owned by the host and valid only during the call; copy what you keep. On ERR_OK fill `info` (never
   NULL; read its struct_size first). Loading an id that is already loaded fails with
   ERR_INVALID_ARGUMENT. */
ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params, EngineModelInfo* info);

/* [see Threading] Unload a model and free its memory. The host never unloads a model while a
   generation on it is in flight. Unknown id: ERR_INVALID_ARGUMENT. */
ENGINE_API int32_t engine_model_unload(const char* model_id);

/* [see Threading] Estimate the device memory that engine_model_load(params) would take, without loading
   it, into *bytes. The host uses it to admit or refuse a load against its VRAM limit. */
ENGINE_API int32_t engine_model_estimate_vram(const EngineModelLoadParams* params, uint64_t* bytes);

/* [any thread] Device memory the engine holds now, all models together, in bytes. */
ENGINE_API uint64_t engine_get_vram_used(void);

/* ---- Streaming generation ---------------------------------------------------------------------- */

/* EngineGenerateParams.flags bits. */
#define ENGINE_GENERATE_LOGPROBS (1u << 0)      /* fill TokenResult.logprob */
#define ENGINE_GENERATE_IGNORE_EOS (1u << 1)    /* do not stop at end-of-generation tokens */
#define ENGINE_GENERATE_ADD_SPECIAL (1u << 2)   /* add the tokens the model's tokenizer adds (e.g. BOS) */
#define ENGINE_GENERATE_PARSE_SPECIAL (1u << 3) /* read special-token text in the prompt as those tokens */

/* ENGINE_SEED_RANDOM in EngineGenerateParams.seed: the plugin picks a seed. */
#define ENGINE_SEED_RANDOM UINT64_MAX

typedef struct EngineGenerateParams {
    uint32_t struct_size;    /* sizeof(EngineGenerateParams) as the host compiled it */
    uint32_t flags;          /* ENGINE_GENERATE_* bits */
    const char* model_id;    /* a model loaded with engine_model_load; NULL = the engine_load_model one */
    const char* prompt;      /* UTF-8 prompt bytes, not NUL-terminated */
    int32_t prompt_len;      /* bytes at `prompt` */
    int32_t max_tokens;      /* most tokens to generate; 0 = until the context is full */
    float temperature;       /* 0 = greedy (argmax) */
    float top_p;             /* nucleus sampling; 1 = off */
    int32_t top_k;           /* keep the k most likely tokens; 0 = off */
    float min_p;             /* drop tokens below min_p x the top probability; 0 = off */
    float presence_penalty;  /* OpenAI semantics; 0 = off */
    float frequency_penalty; /* OpenAI semantics; 0 = off */
    uint64_t seed;           /* sampling seed; ENGINE_SEED_RANDOM = the plugin picks one */
    const char* const* stop; /* n_stop NUL-terminated stop strings, or NULL */
    int32_t n_stop;
    /* Appended in ABI 1 after the fields above. A JSON Schema (NUL-terminated JSON text) the output must
       match, by constrained decoding: every token is chosen among those that keep the output valid, so a
       generation that ends with ENGINE_FINISH_STOP is a complete JSON document the schema accepts. NULL (or
       outside struct_size) = free text. The host sets it only for plugins with ENGINE_FLAG_JSON_SCHEMA; a
       schema the plugin cannot enforce fails the call with ERR_INVALID_ARGUMENT, saying what it cannot. */
    const char* json_schema;
    /* Appended in ABI 1 after json_schema. n_logit_bias pairs: logit_bias_values[i] is added to the logit of
       token logit_bias_tokens[i] before each token is drawn (OpenAI's logit_bias: -100 all but bans a token,
       100 all but forces it). Set only for plugins with ENGINE_FLAG_LOGIT_BIAS; a token id outside the
       vocabulary fails the call with ERR_INVALID_ARGUMENT. */
    const int32_t* logit_bias_tokens;
    const float* logit_bias_values;
    int32_t n_logit_bias;
} EngineGenerateParams;

/* Why a generation ended: EngineGenerateResult.finish_reason. */
enum EngineFinishReason {
    ENGINE_FINISH_STOP = 0,     /* an end-of-generation token, or a stop string */
    ENGINE_FINISH_LENGTH = 1,   /* max_tokens reached, or the context is full */
    ENGINE_FINISH_CANCELLED = 2 /* the token callback asked to stop */
};

typedef struct EngineGenerateResult {
    uint32_t struct_size;      /* set by the host to sizeof(EngineGenerateResult); the plugin fills the rest */
    int32_t finish_reason;     /* an EngineFinishReason */
    int32_t prompt_tokens;     /* tokens the prompt took */
    int32_t completion_tokens; /* tokens generated, including any the callback refused */
} EngineGenerateResult;

/* Called by the plugin for each generated token, in order. `token` and its text are owned by the
   plugin and valid only during the call. Return 0 to go on, non-zero to stop: the plugin then calls no
   more for this generation and returns promptly with ENGINE_FINISH_CANCELLED.
   The plugin may also call it with token == NULL (between prompt batches, say) only to ask whether to
   go on; nothing is emitted then. */
typedef int32_t (*EngineTokenCallback)(void* user_data, const TokenResult* token);

/* [see Threading] Generate from params->prompt, calling on_token for every token, and return when the
   generation ends. on_token may be called from any thread of the plugin's choosing (a shared decode loop,
   for instance), but never concurrently for one generation and never after this function returns.
   `params` (with everything it points to) is owned by the host and valid until this function returns.
   Text emitted must not contain a stop string or anything after it; when one is met, finish with
   ENGINE_FINISH_STOP. On ERR_OK fill `result` (never NULL; read its struct_size first). */
ENGINE_API int32_t engine_generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token,
                                          void* user_data, EngineGenerateResult* result);

/* ---- What a model is doing ---------------------------------------------------------------------- */

/* How busy one loaded model is, for the node's metrics and the load balancers that read them. */
typedef struct EngineModelStats {
    uint32_t struct_size;     /* set by the host to sizeof(EngineModelStats); the plugin fills the rest */
    int32_t requests_running; /* generations of this model being decoded now (prompt or tokens) */
    int32_t requests_waiting; /* generations of this model inside engine_generate_stream still waiting for
                                 a free sequence (more than n_parallel at once) */
    uint64_t kv_cells_used;   /* KV cache cells (one per token position) the running generations hold */
    uint64_t kv_cells_total;  /* KV cache cells of the model, all sequences together; 0 = no KV cache */
} EngineModelStats;

/* [any thread, at any time between engine_init and engine_shutdown, alongside any other call, generations
   included, whatever ENGINE_FLAG_THREAD_SAFE says] Fill `stats` (never NULL; read its struct_size first)
   for `model_id`. The host calls it often (a metrics scrape, every 50 ms under some routers), so it must
   return at once: read counters the decode loop keeps; hold no lock that decoding holds; no I/O. A model id
   that is not loaded (or is being loaded or unloaded): ERR_MODEL_NOT_LOADED. Added in ABI 1 after the
   first release: a plugin without it loads as before, and the node counts its generations itself. */
ENGINE_API int32_t engine_model_get_stats(const char* model_id, EngineModelStats* stats);

/* ---- Embeddings ------------------------------------------------------------------------------------ */

typedef struct EngineEmbedParams {
    uint32_t struct_size;      /* sizeof(EngineEmbedParams) as the host compiled it */
    uint32_t flags;            /* ENGINE_GENERATE_ADD_SPECIAL and ENGINE_GENERATE_PARSE_SPECIAL, as for a prompt */
    const char* model_id;      /* a model loaded with engine_model_load */
    const char* const* inputs; /* n_inputs texts: UTF-8 bytes, not NUL-terminated */
    const int32_t* input_lens; /* bytes at each of `inputs` */
    int32_t n_inputs;
} EngineEmbedParams;

typedef struct EngineEmbedResult {
    uint32_t struct_size;  /* set by the host to sizeof(EngineEmbedResult); the plugin fills the rest */
    int32_t prompt_tokens; /* tokens the inputs took, all together */
} EngineEmbedResult;

/* [see Threading] Added in ABI 1 after the first release. Embed each input with the model loaded as
   params->model_id, pooled as the model prescribes (its metadata), into `embeddings`: n_inputs rows of the
   model's EngineModelInfo.embedding_length floats, input i in row i. `embeddings` holds `n_floats` floats and
   is owned by the host. The plugin writes the embeddings as the model gives them; scaling them (OpenAI's API
   returns unit vectors) is the host's. A model that gives no embeddings: ERR_UNSUPPORTED; an empty input:
   ERR_INVALID_ARGUMENT; an input longer than the model embeds at once: ERR_CONTEXT_OVERFLOW. The host never
   unloads a model while an engine_embed on it is in flight, and keeps each call short (a few inputs): there is
   no cancelling one. On ERR_OK fill `result` (never NULL; read its struct_size first). */
ENGINE_API int32_t engine_embed(const EngineEmbedParams* params, float* embeddings, size_t n_floats,
                                EngineEmbedResult* result);

/* ------------------------------------------------------------------------------------------------
 * Function pointer types for hosts that resolve the entry points at run time.
 * ---------------------------------------------------------------------------------------------- */
typedef EngineInfo* (*engine_get_info_fn)(void);
typedef int (*engine_init_fn)(EngineConfig*);
typedef int (*engine_load_model_fn)(const char*);
typedef int (*engine_generate_fn)(const char*, TokenResult**);
typedef void (*engine_shutdown_fn)(void);
typedef const char* (*engine_get_last_error_fn)(void);
typedef int32_t (*engine_model_load_fn)(const char*, const EngineModelLoadParams*, EngineModelInfo*);
typedef int32_t (*engine_model_unload_fn)(const char*);
typedef int32_t (*engine_model_estimate_vram_fn)(const EngineModelLoadParams*, uint64_t*);
typedef uint64_t (*engine_get_vram_used_fn)(void);
typedef int32_t (*engine_generate_stream_fn)(const EngineGenerateParams*, EngineTokenCallback, void*,
                                             EngineGenerateResult*);
typedef int32_t (*engine_model_get_stats_fn)(const char*, EngineModelStats*);
typedef int32_t (*engine_embed_fn)(const EngineEmbedParams*, float*, size_t, EngineEmbedResult*);

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_API_H */
