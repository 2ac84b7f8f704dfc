// The Unicode facts the tokenizer's pre-tokenizer needs: UTF-8 decoding and three character classes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct CodePoint {
    uint32_t value;
    uint32_t offset;  // byte offset in the decoded text
    uint32_t length;  // bytes it took there
};

// Decodes UTF-8; each byte of an invalid sequence becomes its own U+FFFD, keeping its bytes.
std::vector<CodePoint> decode_utf8(std::string_view text);
void append_utf8(std::string& out, uint32_t cp);

bool is_letter(uint32_t cp);      // \p{L}
bool is_number(uint32_t cp);      // \p{N}
bool is_whitespace(uint32_t cp);  // \s: \p{White_Space}
