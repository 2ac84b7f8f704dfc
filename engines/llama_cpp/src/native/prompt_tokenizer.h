// Prompts to tokens in time linear in their length, however many special tokens they hold.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "errors.h"
#include "llama.h"

// llama_tokenize splits a prompt at its special tokens in time quadratic in their number (a list walked from
// its head for every split): a prompt of 30,000 `<|eot_id|>` takes seconds, and cannot be cancelled. This
// splits it in one pass instead, as llama.cpp would (the same special tokens for the same parse_special, the
// longest one where several start, whitespace stripped beside tokens that ask for it), and gives llama.cpp only
// the plain text between them, which it tokenizes as it would have; the tokens added around a prompt
// (BOS, EOS, CLS/SEP) are the ones llama_tokenize adds.
class PromptTokenizer {
public:
    explicit PromptTokenizer(const llama_vocab* vocab);

    // The tokens of `text`. `keep_going` is asked between pieces (about every 16 KiB of text); when it says
    // no, tokenizing stops and `cancelled` is set.
    EngineError tokenize(const char* text, size_t length, bool add_special, bool parse_special,
                         const std::function<bool()>& keep_going, std::vector<llama_token>* tokens,
                         bool* cancelled) const;

private:
    struct Special {
        std::string text;
        llama_token id;
        bool control;  // CONTROL or UNKNOWN: split out only with parse_special (USER_DEFINED always)
        bool lstrip;
        bool rstrip;
    };

    // The longest special token that `text[at..]` starts with, or nullptr.
    const Special* match(const char* text, size_t length, size_t at, bool parse_special) const;
    bool append_plain(const char* text, size_t length, std::vector<llama_token>* tokens) const;

    const llama_vocab* vocab_;
    std::vector<Special> specials_;
    std::array<std::vector<const Special*>, 256> by_first_byte_;  // each longest first
    std::vector<llama_token> prefix_;  // what llama_tokenize adds before a prompt with add_special
    std::vector<llama_token> suffix_;  // ... and after it
};
