// The few lines of a test harness the native tests need: checks that report and count, and a summary.
#pragma once

#include <cstdio>
#include <string>

inline int g_checks = 0;
inline int g_failures = 0;

inline void check(bool ok, const std::string& what, const char* file, int line) {
    ++g_checks;
    if (!ok) {
        ++g_failures;
        std::fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what.c_str());
    }
}

#define CHECK(condition) check((condition), #condition, __FILE__, __LINE__)
#define CHECK_MSG(condition, message) check((condition), (message), __FILE__, __LINE__)
#define RUN(test)               \
  do {                          \
    std::printf("%s\n", #test); \
    test;                       \
  } while (0)

inline int check_summary() {
    std::printf("%d checks, %d failed\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
