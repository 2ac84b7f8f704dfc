// A JSON reader for the model folder's small configuration files and tokenizer.json.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

class JsonValue {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };

    bool is_null() const { return type_ == Type::Null; }
    bool is_number() const { return type_ == Type::Number; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }

    bool as_bool() const { return type_ == Type::Bool && boolean_; }
    double as_number() const { return number_; }
    const std::string& as_string() const { return string_; }
    const std::vector<JsonValue>& items() const { return items_; }
    // Members in the order the document has them (tokenizer.json's vocabulary is one large object).
    const std::vector<std::pair<std::string, JsonValue>>& members() const { return members_; }

    // The member named `key`, or a null value when there is none or this is not an object.
    const JsonValue& operator[](std::string_view key) const;

private:
    friend class JsonParser;
    Type type_ = Type::Null;
    bool boolean_ = false;
    double number_ = 0;
    std::string string_;
    std::vector<JsonValue> items_;
    std::vector<std::pair<std::string, JsonValue>> members_;
};

// Throws std::runtime_error naming the byte offset of the first error.
JsonValue parse_json(std::string_view text);
