// The part of llama.cpp's common/common.h that its JSON Schema converter (common/json-schema-to-grammar.cpp,
// compiled into the plugin) uses: the rest of llama.cpp's common library is not built. Defined in
// llama_common.cpp. A build from a full llama.cpp source tree finds the real common.h first; it declares the same.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "json.h"

std::string string_join(const std::vector<std::string>& values, const std::string& separator);
std::vector<std::string> string_split(const std::string& str, const std::string& delimiter);
std::string string_repeat(const std::string& str, size_t n);
