// Token text to JS strings: a token's bytes may end in the middle of a character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// The WHATWG Encoding Standard's UTF-8 decoder (https://encoding.spec.whatwg.org/#utf-8-decoder), fed
// in pieces: each invalid sequence becomes one U+FFFD, exactly as V8 and TextDecoder decode the whole
// text at once. Writing UTF-16 here, rather than letting V8 decode, tells us where each token's
// characters end in the JS string.
class Utf8Decoder {
public:
    // Decodes `length` bytes, appending UTF-16 code units to `out`. A character begun and not finished
    // stays inside the decoder until more bytes, or Finish(), come.
    void Decode(const char* bytes, size_t length, std::u16string& out) {
        for (size_t i = 0; i < length;) {
            uint8_t byte = static_cast<uint8_t>(bytes[i]);
            if (needed_ == 0) {
                ++i;
                if (byte <= 0x7F) {
                    out.push_back(byte);
                } else if (byte >= 0xC2 && byte <= 0xDF) {
                    Begin(1, byte & 0x1F);
                } else if (byte >= 0xE0 && byte <= 0xEF) {
                    if (byte == 0xE0) lower_ = 0xA0;  // no overlong forms
                    if (byte == 0xED) upper_ = 0x9F;  // no surrogates
                    Begin(2, byte & 0x0F);
                } else if (byte >= 0xF0 && byte <= 0xF4) {
                    if (byte == 0xF0) lower_ = 0x90;  // no overlong forms
                    if (byte == 0xF4) upper_ = 0x8F;  // nothing above U+10FFFF
                    Begin(3, byte & 0x07);
                } else {
                    out.push_back(kReplacement);
                }
                continue;
            }
            if (byte < lower_ || byte > upper_) {
                // The sequence so far is invalid: one U+FFFD for it, and this byte starts afresh.
                Reset();
                out.push_back(kReplacement);
                continue;
            }
            ++i;
            lower_ = 0x80;
            upper_ = 0xBF;
            code_point_ = (code_point_ << 6) | (byte & 0x3F);
            if (++seen_ < needed_) continue;
            if (code_point_ > 0xFFFF) {
                out.push_back(static_cast<char16_t>(0xD7C0 + (code_point_ >> 10)));
                out.push_back(static_cast<char16_t>(0xDC00 | (code_point_ & 0x3FF)));
            } else {
                out.push_back(static_cast<char16_t>(code_point_));
            }
            Reset();
        }
    }

    // The end of the text: an unfinished character becomes U+FFFD.
    void Finish(std::u16string& out) {
        if (needed_ == 0) return;
        Reset();
        out.push_back(kReplacement);
    }

    // Between characters: nothing begun and unfinished.
    bool AtBoundary() const { return needed_ == 0; }

    void Reset() {
        code_point_ = 0;
        needed_ = 0;
        seen_ = 0;
        lower_ = 0x80;
        upper_ = 0xBF;
    }

private:
    static constexpr char16_t kReplacement = 0xFFFD;

    void Begin(uint32_t needed, uint32_t bits) {
        needed_ = needed;
        code_point_ = bits;
    }

    uint32_t code_point_ = 0;
    uint32_t needed_ = 0;
    uint32_t seen_ = 0;
    uint8_t lower_ = 0x80;
    uint8_t upper_ = 0xBF;
};
