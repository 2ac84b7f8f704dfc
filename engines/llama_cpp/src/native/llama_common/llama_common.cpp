// What llama.cpp's JSON Schema converter and JSON wrapper (common/json-schema-to-grammar.cpp, common/json.cpp)
// take from the libraries the plugin does not link: three string helpers of common, and ggml's abort, which
// the JSON wrapper's assertions call; and where the converter's warnings go.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "common.h"
#include "ggml.h"
#include "schema_warnings.h"

std::string string_join(const std::vector<std::string>& values, const std::string& separator) {
    std::string joined;
    for (size_t i = 0; i < values.size(); ++i) {
        if (i > 0) {
            joined += separator;
        }
        joined += values[i];
    }
    return joined;
}

std::vector<std::string> string_split(const std::string& str, const std::string& delimiter) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t end = str.find(delimiter); end != std::string::npos; end = str.find(delimiter, start)) {
        parts.push_back(str.substr(start, end - start));
        start = end + delimiter.length();
    }
    parts.push_back(str.substr(start));
    return parts;
}

std::string string_repeat(const std::string& str, size_t n) {
    std::string repeated;
    repeated.reserve(str.size() * n);
    for (size_t i = 0; i < n; ++i) {
        repeated += str;
    }
    return repeated;
}

// A failed assertion in the JSON wrapper: a bug, which ends the engine host (the node restarts it).
extern "C" void ggml_abort(const char* file, int line, const char* fmt, ...) {
    std::fprintf(stderr, "%s:%d: ", file, line);
    va_list args;
    va_start(args, fmt);
    std::vfprintf(stderr, fmt, args);
    va_end(args);
    std::fputc('\n', stderr);
    std::abort();
}

namespace {
thread_local std::string schema_warnings;
}

int keep_schema_warning(FILE*, const char* format, ...) {
    char message[1024];
    va_list args;
    va_start(args, format);
    const int length = std::vsnprintf(message, sizeof message, format, args);
    va_end(args);
    schema_warnings += message;
    return length;
}

std::string take_schema_warnings() {
    std::string taken;
    taken.swap(schema_warnings);
    return taken;
}
