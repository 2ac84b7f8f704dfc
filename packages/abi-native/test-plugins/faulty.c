/*
 * faulty — an engine that misbehaves on request, for the tests of engine isolation: whatever it does must cost
 * its own engine host process and requests, never the node.
 *
 * Models: engine_model_load accepts any path (no file is read) and holds nothing.
 *
 * engine_generate_stream: the prompt picks the fault.
 *   "segfault"       writes through a NULL pointer
 *   "abort"          calls abort()
 *   "exit"           calls exit(3)
 *   "hang"           sleeps for good without calling the token callback
 *   "hang-polling"   polls the callback (token NULL) every 10 ms for good, ignoring its answer
 *   "bad-pointer"    a token whose text points at address 16
 *   "huge-length"    a token with text_len 2^31-1 over a 3-byte buffer
 *   "late-callback"  returns at once; a thread of its own calls the callback 50 ms later
 *   "spam"           writes 100,000 lines to stdout, then emits "ok"
 *   "connect"        connects to 127.0.0.1:$FAULTY_CONNECT_PORT and emits "connected", or "refused <errno>"
 *   "fail"           fails with ERR_INTERNAL; with -DBAD_LAST_ERROR engine_get_last_error then returns
 *                    address 16
 * Any other prompt: the tokens "ok" and "done", 10 ms apart.
 *
 * Compile-time options:
 *   -DINIT_FAULT=n      engine_init: 1 hangs, 2 calls exit(0), 3 connects as "connect" does (and succeeds)
 *   -DSHUTDOWN_FAULT=1  engine_shutdown hangs
 *   -DBAD_LAST_ERROR=1  see "fail"
 */
#include <stdlib.h>
#include <string.h>

#include "test_plugin.h"

#ifndef _WIN32
#  include <arpa/inet.h>
#  include <errno.h>
#  include <netinet/in.h>
#  include <sys/socket.h>
#  include <unistd.h>
#endif

#ifndef INIT_FAULT
#  define INIT_FAULT 0
#endif
#ifndef SHUTDOWN_FAULT
#  define SHUTDOWN_FAULT 0
#endif
#ifndef BAD_LAST_ERROR
#  define BAD_LAST_ERROR 0
#endif

static EngineInfo info = {
    .abi_version = ENGINE_ABI_VERSION,
    .engine_id = "faulty",
    .version = "1.0.0",
    .struct_size = sizeof(EngineInfo),
    .flags = ENGINE_FLAG_THREAD_SAFE,
};

static void sleep_for_good(void) {
    for (;;) tp_sleep_us(1000000);
}

/* 0 when 127.0.0.1:$FAULTY_CONNECT_PORT accepted a connection, else the errno of the failure. */
static int connect_out(void) {
#ifdef _WIN32
    return -1;
#else
    const char* port = getenv("FAULTY_CONNECT_PORT");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return errno;
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)(port ? atoi(port) : 9));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr*)&address, sizeof address) == 0 ? 0 : errno;
    close(fd);
    return rc;
#endif
}

ENGINE_API EngineInfo* engine_get_info(void) {
    return &info;
}

ENGINE_API const char* engine_get_last_error(void) {
    return BAD_LAST_ERROR ? (const char*)16 : tp_last_error;
}

ENGINE_API int engine_init(EngineConfig* config) {
    (void)config;
    if (INIT_FAULT == 1) sleep_for_good();
    if (INIT_FAULT == 2) exit(0);
    if (INIT_FAULT == 3 && connect_out() == 0) printf("faulty: connected during engine_init\n");
    return ERR_OK;
}

ENGINE_API void engine_shutdown(void) {
    if (SHUTDOWN_FAULT) sleep_for_good();
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

ENGINE_API int32_t engine_model_load(const char* model_id, const EngineModelLoadParams* params, EngineModelInfo* out) {
    (void)model_id;
    if (TP_HAS_FIELD(out, EngineModelInfo, context_length))
        out->context_length = params->context_length > 0 ? params->context_length : 4096;
    if (TP_HAS_FIELD(out, EngineModelInfo, vram_bytes)) out->vram_bytes = 0;
    return ERR_OK;
}

ENGINE_API int32_t engine_model_unload(const char* model_id) {
    (void)model_id;
    return ERR_OK;
}

static int32_t emit(EngineTokenCallback on_token, void* user_data, const char* text, int32_t len) {
    TokenResult token = {0, len, text, 0.0f};
    return on_token(user_data, &token);
}

#ifndef _WIN32
typedef struct LateCall {
    EngineTokenCallback on_token;
    void* user_data;
} LateCall;

static void* call_late(void* arg) {
    LateCall* late = (LateCall*)arg;
    tp_sleep_us(50000);
    emit(late->on_token, late->user_data, "late", 4);
    free(late);
    return NULL;
}
#endif

static int is(const EngineGenerateParams* params, const char* fault) {
    size_t len = strlen(fault);
    return params->prompt_len >= 0 && (size_t)params->prompt_len == len && memcmp(params->prompt, fault, len) == 0;
}

ENGINE_API int32_t engine_generate_stream(const EngineGenerateParams* params, EngineTokenCallback on_token,
                                          void* user_data, EngineGenerateResult* result) {
    int32_t produced = 0;
    if (is(params, "segfault")) {
        *(volatile int*)0 = 1;
    } else if (is(params, "abort")) {
        abort();
    } else if (is(params, "exit")) {
        exit(3);
    } else if (is(params, "hang")) {
        sleep_for_good();
    } else if (is(params, "hang-polling")) {
        for (;;) {
            on_token(user_data, NULL);
            tp_sleep_us(10000);
        }
    } else if (is(params, "bad-pointer")) {
        emit(on_token, user_data, (const char*)16, 5);
        produced = 1;
    } else if (is(params, "huge-length")) {
        emit(on_token, user_data, "abc", 0x7fffffff);
        produced = 1;
    } else if (is(params, "late-callback")) {
#ifndef _WIN32
        LateCall* late = (LateCall*)malloc(sizeof *late);
        late->on_token = on_token;
        late->user_data = user_data;
        pthread_t thread;
        pthread_create(&thread, NULL, call_late, late);
        pthread_detach(thread);
#endif
    } else if (is(params, "spam")) {
        for (int i = 0; i < 100000; i++) printf("faulty: line %d of a flood on stdout\n", i);
        fflush(stdout);
        emit(on_token, user_data, "ok", 2);
        produced = 1;
    } else if (is(params, "connect")) {
        char text[32];
        int rc = connect_out();
        int len = rc == 0 ? snprintf(text, sizeof text, "connected") : snprintf(text, sizeof text, "refused %d", rc);
        emit(on_token, user_data, text, len);
        produced = 1;
    } else if (is(params, "fail")) {
        return tp_fail(ERR_INTERNAL, "faulty: failing as asked");
    } else {
        if (emit(on_token, user_data, "ok", 2) == 0) {
            produced = 1;
            tp_sleep_us(10000);
            if (emit(on_token, user_data, " done", 5) == 0) produced = 2;
        }
    }
    if (TP_HAS_FIELD(result, EngineGenerateResult, finish_reason)) result->finish_reason = ENGINE_FINISH_STOP;
    if (TP_HAS_FIELD(result, EngineGenerateResult, prompt_tokens)) result->prompt_tokens = 1;
    if (TP_HAS_FIELD(result, EngineGenerateResult, completion_tokens)) result->completion_tokens = produced;
    return ERR_OK;
}
