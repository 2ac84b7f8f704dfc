// Denying an engine host the network before it opens a plugin (engine_api.h: plugins must not communicate
// externally).
#pragma once

#include <string>

// What an engine host writes on its stderr, followed by the address family and a newline, each time the
// plugin tries to create a network socket; the node reads it and reports the attempt.
constexpr char kDeniedSocketMarker[] = "llm-node: denied socket() of address family ";

struct SandboxResult {
    bool enforced;
    std::string how;  // the mechanism, or why none could be installed
};

// Linux x86-64 and arm64: a seccomp filter on every thread of the process (socket() of any family but
// AF_UNIX fails with EPERM and is reported). macOS: the system's no-network sandbox profile. Elsewhere
// nothing is enforced. Irreversible for the process.
SandboxResult DenyNetwork();
