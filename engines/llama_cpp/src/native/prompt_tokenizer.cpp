#include "prompt_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "llama_library.h"

namespace {

// How much plain text is tokenized between two questions whether to go on.
constexpr size_t kPollBytes = 16 * 1024;

std::vector<llama_token> tokenize_whole(const llama_vocab* vocab, const std::string& text, bool add_special) {
    std::vector<llama_token> tokens(text.size() + 16);
    int32_t n = lib.llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                                   static_cast<int32_t>(tokens.size()), add_special, false);
    tokens.resize(static_cast<size_t>(std::max(n, 0)));
    return tokens;
}

bool is_space(char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0;
}

}  // namespace

PromptTokenizer::PromptTokenizer(const llama_vocab* vocab) : vocab_(vocab) {
    const int32_t n_tokens = lib.llama_vocab_n_tokens(vocab);
    for (llama_token id = 0; id < n_tokens; ++id) {
        const auto attr = static_cast<uint32_t>(lib.llama_vocab_get_attr(vocab, id));
        const uint32_t special = LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED | LLAMA_TOKEN_ATTR_UNKNOWN;
        const char* text = lib.llama_vocab_get_text(vocab, id);
        if ((attr & special) == 0 || text == nullptr || *text == '\0') {
            continue;
        }
        specials_.push_back({text, id, (attr & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_UNKNOWN)) != 0,
                             (attr & LLAMA_TOKEN_ATTR_LSTRIP) != 0, (attr & LLAMA_TOKEN_ATTR_RSTRIP) != 0});
    }
    for (const Special& special : specials_) {
        by_first_byte_[static_cast<unsigned char>(special.text[0])].push_back(&special);
    }
    for (auto& bucket : by_first_byte_) {
        std::stable_sort(bucket.begin(), bucket.end(),
                         [](const Special* a, const Special* b) { return a->text.size() > b->text.size(); });
    }
    // What add_special adds, and where: the tokens of a plain word with it, around the word's own tokens.
    const std::vector<llama_token> bare = tokenize_whole(vocab, "a", false);
    const std::vector<llama_token> dressed = tokenize_whole(vocab, "a", true);
    const auto found = std::search(dressed.begin(), dressed.end(), bare.begin(), bare.end());
    if (!bare.empty() && found != dressed.end()) {
        prefix_.assign(dressed.begin(), found);
        suffix_.assign(found + static_cast<std::ptrdiff_t>(bare.size()), dressed.end());
    }
}

const PromptTokenizer::Special* PromptTokenizer::match(const char* text, size_t length, size_t at,
                                                       bool parse_special) const {
    for (const Special* special : by_first_byte_[static_cast<unsigned char>(text[at])]) {
        if (special->control && !parse_special) {
            continue;
        }
        const size_t size = special->text.size();
        if (size <= length - at && std::memcmp(text + at, special->text.data(), size) == 0) {
            return special;
        }
    }
    return nullptr;
}

bool PromptTokenizer::append_plain(const char* text, size_t length, std::vector<llama_token>* tokens) const {
    if (length == 0) {
        return true;
    }
    const size_t start = tokens->size();
    tokens->resize(start + length + 16);  // at most a token per byte
    const int32_t n = lib.llama_tokenize(vocab_, text, static_cast<int32_t>(length), tokens->data() + start,
                                         static_cast<int32_t>(length + 16), false, false);
    if (n < 0) {
        return false;
    }
    tokens->resize(start + static_cast<size_t>(n));
    return true;
}

EngineError PromptTokenizer::tokenize(const char* text, size_t length, bool add_special, bool parse_special,
                                      const std::function<bool()>& keep_going, std::vector<llama_token>* tokens,
                                      bool* cancelled) const {
    *cancelled = false;
    tokens->clear();
    if (add_special) {
        tokens->insert(tokens->end(), prefix_.begin(), prefix_.end());
    }
    size_t plain_start = 0;  // the plain text not tokenized yet begins here
    size_t polled_at = 0;
    bool strip_left = false;  // the special token before the plain text strips its whitespace
    for (size_t at = 0; at <= length; ++at) {
        const Special* special = at < length ? match(text, length, at, parse_special) : nullptr;
        if (special == nullptr && at < length) {
            continue;
        }
        size_t begin = plain_start;
        size_t end = at;
        if (strip_left) {
            while (begin < end && is_space(text[begin])) {
                ++begin;
            }
        }
        if (special != nullptr && special->lstrip) {
            while (end > begin && is_space(text[end - 1])) {
                --end;
            }
        }
        if (!append_plain(text + begin, end - begin, tokens)) {
            return engine_error(ERR_INVALID_ARGUMENT, "the prompt could not be tokenized");
        }
        if (special == nullptr) {
            break;  // the end of the text
        }
        tokens->push_back(special->id);
        at += special->text.size() - 1;
        plain_start = at + 1;
        strip_left = special->rstrip;
        if (plain_start - polled_at >= kPollBytes) {
            polled_at = plain_start;
            if (!keep_going()) {
                *cancelled = true;
                return {};
            }
        }
    }
    if (add_special) {
        tokens->insert(tokens->end(), suffix_.begin(), suffix_.end());
    }
    return {};
}
