#include "unicode.h"

#include <algorithm>
#include <iterator>

// k_letters, k_numbers, k_whitespace: sorted, disjoint [first, last] ranges, written by scripts/unicode-ranges.mjs
// from the JavaScript engine's own \p{...} classes when the plugin is built.
#include "unicode_ranges.h"

namespace {

template <size_t N>
bool in_ranges(const UnicodeRange (&ranges)[N], uint32_t cp) {
    const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                      [](uint32_t value, const UnicodeRange& range) { return value < range.first; });
    return it != std::begin(ranges) && cp <= std::prev(it)->last;
}

}  // namespace

bool is_letter(uint32_t cp) {
    return in_ranges(k_letters, cp);
}

bool is_number(uint32_t cp) {
    return in_ranges(k_numbers, cp);
}

bool is_whitespace(uint32_t cp) {
    return in_ranges(k_whitespace, cp);
}

std::vector<CodePoint> decode_utf8(std::string_view text) {
    std::vector<CodePoint> out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        const auto lead = static_cast<unsigned char>(text[i]);
        uint32_t length = lead < 0x80           ? 1
                          : (lead >> 5) == 0x6  ? 2
                          : (lead >> 4) == 0xE  ? 3
                          : (lead >> 3) == 0x1E ? 4
                                                : 0;
        uint32_t cp = length == 1 ? lead : length == 2 ? (lead & 0x1F) : length == 3 ? (lead & 0x0F) : (lead & 0x07);
        bool valid = length != 0 && i + length <= text.size();
        for (uint32_t k = 1; valid && k < length; ++k) {
            const auto next = static_cast<unsigned char>(text[i + k]);
            valid = (next & 0xC0) == 0x80;
            cp = (cp << 6) | (next & 0x3F);
        }
        if (!valid) {
            out.push_back({0xFFFD, static_cast<uint32_t>(i), 1});
            ++i;
            continue;
        }
        out.push_back({cp, static_cast<uint32_t>(i), length});
        i += length;
    }
    return out;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}
