// The tokenizer of a model folder's tokenizer.json: byte-level BPE with Llama 3's pre-tokenizer, its added
// (special) tokens and the tokens its post-processor puts around a text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "json.h"

class Tokenizer {
public:
    // Throws EngineError (ERR_UNSUPPORTED) for a tokenizer.json this class does not implement, naming what.
    explicit Tokenizer(const JsonValue& document);

    // `add_special`: the post-processor's tokens around the text (Llama 3: <|begin_of_text|> before it).
    // `parse_special`: added tokens' text in `text` becomes those tokens, rather than being tokenized as text.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // The bytes a token stands for: empty for special tokens, and for ids past the vocabulary (a graph's logits
    // may cover more tokens than the tokenizer has).
    const std::string& piece(int32_t id) const;
    int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }

private:
    struct AddedToken {
        std::string content;
        int32_t id;
    };

    void encode_text(std::string_view text, std::vector<int32_t>& out) const;
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;

    std::unordered_map<std::string, int32_t> vocab_;        // byte-level text of a token -> id
    std::unordered_map<std::string, int32_t> merge_ranks_;  // "left right" -> rank, lower merges first
    std::vector<AddedToken> added_;                         // longest first, so that the longest match wins
    std::vector<std::string> pieces_;
    std::vector<int32_t> prefix_;  // the post-processor's tokens before the text
    std::vector<int32_t> suffix_;  // and after it
    bool ignore_merges_ = false;   // a word that is a whole token is that token, whatever the merges say
};
