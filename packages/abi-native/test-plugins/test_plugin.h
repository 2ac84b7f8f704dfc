/*
 * Helpers shared by the test plugins; not part of the ABI. Portable to GCC, Clang and MSVC, so that the
 * tests can compile the plugins with whatever C compiler the machine has.
 */
#ifndef TEST_PLUGIN_H
#define TEST_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine_api.h"

#if defined(_MSC_VER)
#  define TP_THREAD_LOCAL __declspec(thread)
#else
#  define TP_THREAD_LOCAL _Thread_local
#endif

#ifdef _WIN32
#  include <windows.h>
typedef SRWLOCK tp_mutex;
#  define TP_MUTEX_INIT SRWLOCK_INIT
static inline void tp_lock(tp_mutex* m) {
    AcquireSRWLockExclusive(m);
}
static inline void tp_unlock(tp_mutex* m) {
    ReleaseSRWLockExclusive(m);
}
static inline void tp_sleep_us(unsigned us) {
    Sleep((us + 999) / 1000);
}
#else
#  include <pthread.h>
#  include <time.h>
typedef pthread_mutex_t tp_mutex;
#  define TP_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
static inline void tp_lock(tp_mutex* m) {
    pthread_mutex_lock(m);
}
static inline void tp_unlock(tp_mutex* m) {
    pthread_mutex_unlock(m);
}
static inline void tp_sleep_us(unsigned us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}
#endif

/* Counters several threads add to and one reads (engine_model_get_stats), without a lock. */
#if defined(_MSC_VER)
#  include <intrin.h>
static inline void tp_atomic_add(volatile int64_t* counter, int64_t n) {
    _InterlockedExchangeAdd64(counter, n);
}
static inline int64_t tp_atomic_load(volatile int64_t* counter) {
    return _InterlockedOr64(counter, 0);
}
#else
static inline void tp_atomic_add(volatile int64_t* counter, int64_t n) {
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}
static inline int64_t tp_atomic_load(volatile int64_t* counter) {
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}
#endif

/* Stringifies a -D value, so that `-DENGINE_ID=other` needs no shell quoting on any compiler. */
#define TP_STR_(x) #x
#define TP_STR(x) TP_STR_(x)

/* engine_api.h: read a field of a struct the other side filled only if it lies inside struct_size. */
#define TP_HAS_FIELD(ptr, type, field) ((ptr)->struct_size >= offsetof(type, field) + sizeof((ptr)->field))

/* The message engine_get_last_error returns: per thread, as the header asks. */
static TP_THREAD_LOCAL char tp_last_error[512];

/* Records why the current call fails and returns `code`: `return tp_fail(ERR_X, "...", ...);` */
static inline int32_t tp_fail(int32_t code, const char* format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(tp_last_error, sizeof tp_last_error, format, args);
    va_end(args);
    return code;
}

#endif /* TEST_PLUGIN_H */
