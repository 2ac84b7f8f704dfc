#include "pretokenizer.h"

#include "unicode.h"

const char* const k_llama3_split_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

bool is_newline(uint32_t cp) {
    return cp == '\r' || cp == '\n';
}

// Neither whitespace, a letter nor a number: [^\s\p{L}\p{N}].
bool is_other(uint32_t cp) {
    return !is_whitespace(cp) && !is_letter(cp) && !is_number(cp);
}

uint32_t ascii_lower(uint32_t cp) {
    return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp;
}

// The length, in code points, of the match of the pattern's alternatives at `pos`, tried in the pattern's order
// (the first alternative that matches wins, each as long as its quantifiers make it).
size_t match_at(const std::vector<CodePoint>& cps, size_t pos) {
    const size_t n = cps.size();
    auto at = [&](size_t i) { return i < n ? cps[i].value : 0xFFFFFFFFu; };
    const uint32_t c = at(pos);

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (c == '\'') {
        const uint32_t c1 = ascii_lower(at(pos + 1));
        const uint32_t c2 = ascii_lower(at(pos + 2));
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
            return 2;
        }
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
            return 3;
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is_letter(c) || (!is_newline(c) && !is_number(c) && pos + 1 < n && is_letter(at(pos + 1)))) {
        size_t end = pos + 1;
        while (end < n && is_letter(at(end))) {
            ++end;
        }
        return end - pos;
    }
    // \p{N}{1,3}
    if (is_number(c)) {
        size_t end = pos + 1;
        while (end < n && end - pos < 3 && is_number(at(end))) {
            ++end;
        }
        return end - pos;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const size_t start = (c == ' ' && pos + 1 < n && is_other(at(pos + 1))) ? pos + 1 : pos;
    if (start < n && is_other(at(start))) {
        size_t end = start;
        while (end < n && is_other(at(end))) {
            ++end;
        }
        while (end < n && is_newline(at(end))) {
            ++end;
        }
        return end - pos;
    }
    // The rest start with whitespace: c is whitespace here, since every other character matched above.
    size_t run_end = pos;
    size_t after_last_newline = 0;
    while (run_end < n && is_whitespace(at(run_end))) {
        if (is_newline(at(run_end))) {
            after_last_newline = run_end + 1;
        }
        ++run_end;
    }
    // \s*[\r\n]+ : the greedy \s* gives back whitespace up to the last newline of the run.
    if (after_last_newline != 0) {
        return after_last_newline - pos;
    }
    // \s+(?!\S) : at the end of the text all of the run; before a non-space, all but its last character.
    if (run_end == n) {
        return run_end - pos;
    }
    if (run_end - pos > 1) {
        return run_end - pos - 1;
    }
    // \s+
    return run_end > pos ? run_end - pos : 1;
}

}  // namespace

std::vector<std::string_view> split_llama3(std::string_view text) {
    const std::vector<CodePoint> cps = decode_utf8(text);
    std::vector<std::string_view> words;
    size_t pos = 0;
    while (pos < cps.size()) {
        const size_t length = match_at(cps, pos);
        const size_t begin = cps[pos].offset;
        const size_t last = pos + length - 1;
        words.push_back(text.substr(begin, cps[last].offset + cps[last].length - begin));
        pos += length;
    }
    return words;
}
