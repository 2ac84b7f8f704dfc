// Errors as the ABI reports them, and the llama.cpp log lines that explain them.
#pragma once

#include <string>

#include "engine_api.h"

// An ABI error code with the message engine_get_last_error() will give for it.
struct EngineError {
    int32_t code = ERR_OK;
    std::string message;

    explicit operator bool() const { return code != ERR_OK; }
};

inline EngineError engine_error(int32_t code, std::string message) {
    return EngineError{code, std::move(message)};
}

// While one is alive, the warning and error lines llama.cpp logs on this thread are collected, so that a
// failing call can say what llama.cpp said (it often only returns NULL). Scopes nest; the innermost collects.
class LogCapture {
public:
    LogCapture();
    ~LogCapture();
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;

    // The collected lines, trimmed, joined with "; ".
    std::string text() const;
    bool contains(const char* needle) const { return lines_.find(needle) != std::string::npos; }

    // Called by the log handler.
    void append(const char* text) { lines_ += text; }

private:
    std::string lines_;
    LogCapture* outer_;
};

// Routes llama.cpp's and ggml's log to stderr (warnings and errors only) and to the LogCapture of the thread.
void install_log_handler();
