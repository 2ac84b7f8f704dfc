// An ABI error code with the message engine_get_last_error() gives for it, thrown from wherever a load or a
// generation finds it and caught at the entry point.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine_api.h"

class EngineError : public std::runtime_error {
public:
    EngineError(int32_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
    int32_t code() const { return code_; }

private:
    int32_t code_;
};
