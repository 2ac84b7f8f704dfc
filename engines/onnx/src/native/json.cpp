#include "json.h"

#include <cstdlib>
#include <stdexcept>

#include "unicode.h"

namespace {
const JsonValue k_null;
}

const JsonValue& JsonValue::operator[](std::string_view key) const {
    for (const auto& member : members_) {
        if (member.first == key) {
            return member.second;
        }
    }
    return k_null;
}

class JsonParser {
public:
    explicit JsonParser(std::string_view text) : text_(text) {}

    JsonValue document() {
        JsonValue value = parse_value(0);
        skip_space();
        if (pos_ != text_.size()) {
            fail("unexpected text after the document");
        }
        return value;
    }

private:
    // Deep enough for any configuration file, shallow enough that a hostile file cannot exhaust the stack.
    static constexpr int k_max_depth = 128;

    [[noreturn]] void fail(const char* what) const {
        throw std::runtime_error(std::string(what) + " at byte " + std::to_string(pos_));
    }

    void skip_space() {
        while (pos_ < text_.size() &&
               (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' || text_[pos_] == '\t')) {
            ++pos_;
        }
    }

    bool consume(std::string_view word) {
        if (text_.substr(pos_, word.size()) == word) {
            pos_ += word.size();
            return true;
        }
        return false;
    }

    JsonValue parse_value(int depth) {
        if (depth > k_max_depth) {
            fail("nesting too deep");
        }
        skip_space();
        if (pos_ >= text_.size()) {
            fail("unexpected end");
        }
        JsonValue value;
        const char c = text_[pos_];
        if (c == '{') {
            value.type_ = JsonValue::Type::Object;
            ++pos_;
            skip_space();
            if (pos_ < text_.size() && text_[pos_] == '}') {
                ++pos_;
                return value;
            }
            for (;;) {
                skip_space();
                if (pos_ >= text_.size() || text_[pos_] != '"') {
                    fail("expected a member name");
                }
                std::string key = parse_string();
                skip_space();
                if (!consume(":")) {
                    fail("expected ':'");
                }
                value.members_.emplace_back(std::move(key), parse_value(depth + 1));
                skip_space();
                if (consume("}")) {
                    return value;
                }
                if (!consume(",")) {
                    fail("expected ',' or '}'");
                }
            }
        }
        if (c == '[') {
            value.type_ = JsonValue::Type::Array;
            ++pos_;
            skip_space();
            if (consume("]")) {
                return value;
            }
            for (;;) {
                value.items_.push_back(parse_value(depth + 1));
                skip_space();
                if (consume("]")) {
                    return value;
                }
                if (!consume(",")) {
                    fail("expected ',' or ']'");
                }
            }
        }
        if (c == '"') {
            value.type_ = JsonValue::Type::String;
            value.string_ = parse_string();
            return value;
        }
        if (consume("true")) {
            value.type_ = JsonValue::Type::Bool;
            value.boolean_ = true;
            return value;
        }
        if (consume("false")) {
            value.type_ = JsonValue::Type::Bool;
            return value;
        }
        if (consume("null")) {
            return value;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            const size_t start = pos_;
            while (pos_ < text_.size() &&
                   std::string_view("+-0123456789.eE").find(text_[pos_]) != std::string_view::npos) {
                ++pos_;
            }
            const std::string number(text_.substr(start, pos_ - start));
            char* end = nullptr;
            value.type_ = JsonValue::Type::Number;
            value.number_ = std::strtod(number.c_str(), &end);
            if (end != number.c_str() + number.size()) {
                fail("malformed number");
            }
            return value;
        }
        fail("unexpected character");
    }

    unsigned hex4() {
        if (pos_ + 4 > text_.size()) {
            fail("truncated \\u escape");
        }
        unsigned code = 0;
        for (int i = 0; i < 4; ++i) {
            const char h = text_[pos_++];
            code <<= 4;
            if (h >= '0' && h <= '9') {
                code |= static_cast<unsigned>(h - '0');
            } else if (h >= 'a' && h <= 'f') {
                code |= static_cast<unsigned>(h - 'a' + 10);
            } else if (h >= 'A' && h <= 'F') {
                code |= static_cast<unsigned>(h - 'A' + 10);
            } else {
                fail("bad \\u escape");
            }
        }
        return code;
    }

    std::string parse_string() {
        ++pos_;  // the opening quote
        std::string out;
        for (;;) {
            if (pos_ >= text_.size()) {
                fail("unterminated string");
            }
            const char c = text_[pos_++];
            if (c == '"') {
                return out;
            }
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= text_.size()) {
                fail("unterminated escape");
            }
            const char e = text_[pos_++];
            switch (e) {
                case '"':
                    out += '"';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '/':
                    out += '/';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'u': {
                    unsigned cp = hex4();
                    // A character outside the BMP comes as a surrogate pair; a lone surrogate becomes U+FFFD.
                    if (cp >= 0xD800 && cp <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
                        pos_ += 2;
                        const unsigned low = hex4();
                        cp = (low >= 0xDC00 && low <= 0xDFFF) ? 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                                                              : 0xFFFD;
                    } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                        cp = 0xFFFD;
                    }
                    append_utf8(out, cp);
                    break;
                }
                default:
                    fail("bad escape");
            }
        }
    }

    std::string_view text_;
    size_t pos_ = 0;
};

JsonValue parse_json(std::string_view text) {
    return JsonParser(text).document();
}
