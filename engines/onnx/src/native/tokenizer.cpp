#include "tokenizer.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <utility>

#include "errors.h"
#include "pretokenizer.h"
#include "unicode.h"

namespace {

[[noreturn]] void unsupported(const std::string& what) {
    throw EngineError(ERR_UNSUPPORTED,
                      "tokenizer.json: " + what + " is not supported (byte-level BPE with Llama 3's pre-tokenizer is)");
}

// GPT-2's byte-level alphabet: every byte is a printable character, the printable ASCII and Latin-1 bytes
// standing for themselves and the others for the code points from U+0100 on.
std::vector<uint32_t> byte_to_code_point() {
    std::vector<uint32_t> table(256);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        table[b] = printable ? b : next++;
    }
    return table;
}

const std::vector<uint32_t>& byte_alphabet() {
    static const std::vector<uint32_t> table = byte_to_code_point();
    return table;
}

// The bytes a vocabulary entry stands for; a character outside the alphabet makes it unrepresentable.
bool alphabet_to_bytes(const std::string& text, std::string& bytes) {
    static const std::unordered_map<uint32_t, char> inverse = [] {
        std::unordered_map<uint32_t, char> map;
        for (uint32_t b = 0; b < 256; ++b) {
            map[byte_alphabet()[b]] = static_cast<char>(b);
        }
        return map;
    }();
    bytes.clear();
    for (const CodePoint& cp : decode_utf8(text)) {
        const auto it = inverse.find(cp.value);
        if (it == inverse.end()) {
            return false;
        }
        bytes += it->second;
    }
    return true;
}

// The Split of the pre-tokenizer, alone or in a Sequence beside a ByteLevel that does not split again.
void check_pre_tokenizer(const JsonValue& pre) {
    const JsonValue* split = nullptr;
    if (pre["type"].as_string() == "Sequence") {
        for (const JsonValue& step : pre["pretokenizers"].items()) {
            const std::string& type = step["type"].as_string();
            if (type == "Split" && split == nullptr) {
                split = &step;
            } else if (type != "ByteLevel" || step["use_regex"].as_bool()) {
                unsupported("the pre-tokenizer step '" + type + "'");
            }
        }
    }
    if (split == nullptr || split->operator[]("pattern")["Regex"].as_string() != k_llama3_split_pattern ||
        split->operator[]("behavior").as_string() != "Isolated" || split->operator[]("invert").as_bool()) {
        unsupported("a pre-tokenizer other than Llama 3's split");
    }
}

// The TemplateProcessing's special tokens before and after the text of a single sequence.
void read_template(const JsonValue& post, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
    const JsonValue* processing = nullptr;
    if (post["type"].as_string() == "TemplateProcessing") {
        processing = &post;
    } else if (post["type"].as_string() == "Sequence") {
        for (const JsonValue& step : post["processors"].items()) {
            if (step["type"].as_string() == "TemplateProcessing") {
                processing = &step;
            }
        }
    }
    if (processing == nullptr) {
        return;
    }
    bool after = false;
    for (const JsonValue& item : (*processing)["single"].items()) {
        if (!item["Sequence"].is_null()) {
            after = true;
            continue;
        }
        const std::string& name = item["SpecialToken"]["id"].as_string();
        for (const JsonValue& id : (*processing)["special_tokens"][name]["ids"].items()) {
            (after ? suffix : prefix).push_back(static_cast<int32_t>(id.as_number()));
        }
    }
}

}  // namespace

Tokenizer::Tokenizer(const JsonValue& document) {
    const JsonValue& model = document["model"];
    if (model["type"].as_string() != "BPE") {
        unsupported("the model type '" + model["type"].as_string() + "'");
    }
    if (model["byte_fallback"].as_bool()) {
        unsupported("byte_fallback");
    }
    if (!document["normalizer"].is_null()) {
        unsupported("a normalizer");
    }
    check_pre_tokenizer(document["pre_tokenizer"]);
    if (document["decoder"]["type"].as_string() != "ByteLevel") {
        unsupported("the decoder '" + document["decoder"]["type"].as_string() + "'");
    }
    ignore_merges_ = model["ignore_merges"].as_bool();

    int32_t n_tokens = 0;
    vocab_.reserve(model["vocab"].members().size());
    for (const auto& entry : model["vocab"].members()) {
        const auto id = static_cast<int32_t>(entry.second.as_number());
        vocab_.emplace(entry.first, id);
        n_tokens = std::max(n_tokens, id + 1);
    }
    const auto& merges = model["merges"].items();
    merge_ranks_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        // Older files write a merge as "left right", newer ones as ["left", "right"].
        const JsonValue& merge = merges[rank];
        const std::string key = merge.is_array() && merge.items().size() == 2
                                    ? merge.items()[0].as_string() + " " + merge.items()[1].as_string()
                                    : merge.as_string();
        merge_ranks_.emplace(key, static_cast<int32_t>(rank));
    }
    for (const JsonValue& token : document["added_tokens"].items()) {
        const auto id = static_cast<int32_t>(token["id"].as_number());
        added_.push_back({token["content"].as_string(), id});
        n_tokens = std::max(n_tokens, id + 1);
    }
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });

    pieces_.resize(static_cast<size_t>(n_tokens));
    std::string bytes;
    for (const auto& entry : vocab_) {
        if (alphabet_to_bytes(entry.first, bytes)) {
            pieces_[static_cast<size_t>(entry.second)] = bytes;
        }
    }
    for (const JsonValue& token : document["added_tokens"].items()) {
        pieces_[static_cast<size_t>(token["id"].as_number())] =
            token["special"].as_bool() ? "" : token["content"].as_string();
    }
    read_template(document["post_processor"], prefix_, suffix_);
}

const std::string& Tokenizer::piece(int32_t id) const {
    static const std::string none;
    return id >= 0 && id < vocab_size() ? pieces_[static_cast<size_t>(id)] : none;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<int32_t> out;
    if (add_special) {
        out = prefix_;
    }
    size_t plain_start = 0;
    size_t pos = 0;
    while (parse_special && pos < text.size()) {
        const auto match = std::find_if(added_.begin(), added_.end(), [&](const AddedToken& token) {
            return !token.content.empty() && text.compare(pos, token.content.size(), token.content) == 0;
        });
        if (match == added_.end()) {
            ++pos;
            continue;
        }
        encode_text(text.substr(plain_start, pos - plain_start), out);
        out.push_back(match->id);
        pos += match->content.size();
        plain_start = pos;
    }
    encode_text(text.substr(plain_start), out);
    if (add_special) {
        out.insert(out.end(), suffix_.begin(), suffix_.end());
    }
    return out;
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
    for (const std::string_view word : split_llama3(text)) {
        encode_word(word, out);
    }
}

void Tokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    // The word in the byte-level alphabet, and its symbols: spans of it, linked to their neighbours.
    struct Symbol {
        size_t start;
        size_t length;
        int prev;
        int next;
    };
    std::string text;
    std::vector<Symbol> symbols;
    for (const char byte : word) {
        const size_t start = text.size();
        append_utf8(text, byte_alphabet()[static_cast<unsigned char>(byte)]);
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({start, text.size() - start, index - 1, index + 1});
    }
    symbols.back().next = -1;
    const auto as_token = vocab_.find(text);
    if (ignore_merges_ && as_token != vocab_.end()) {
        out.push_back(as_token->second);
        return;
    }

    // BPE with a queue of candidate merges, lowest rank first and leftmost among equals, as Hugging Face's
    // tokenizers runs it: O(n log n) in the word's length where rescanning every pair would be quadratic. A queued
    // pair is stale once either symbol has changed; its recorded length tells.
    struct Candidate {
        int32_t rank;
        int left;
        size_t length;
        bool operator>(const Candidate& other) const {
            return rank != other.rank ? rank > other.rank : left > other.left;
        }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    auto consider = [&](int left) {
        const int right = left < 0 ? -1 : symbols[static_cast<size_t>(left)].next;
        if (right < 0) {
            return;
        }
        const Symbol& a = symbols[static_cast<size_t>(left)];
        const Symbol& b = symbols[static_cast<size_t>(right)];
        const auto it = merge_ranks_.find(text.substr(a.start, a.length) + " " + text.substr(b.start, b.length));
        if (it != merge_ranks_.end()) {
            queue.push({it->second, left, a.length + b.length});
        }
    };
    for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) {
        consider(i);
    }
    while (!queue.empty()) {
        const Candidate candidate = queue.top();
        queue.pop();
        Symbol& left = symbols[static_cast<size_t>(candidate.left)];
        if (left.length == 0 || left.next < 0 ||
            left.length + symbols[static_cast<size_t>(left.next)].length != candidate.length) {
            continue;
        }
        Symbol& right = symbols[static_cast<size_t>(left.next)];
        left.length += right.length;
        right.length = 0;  // merged away
        left.next = right.next;
        if (left.next >= 0) {
            symbols[static_cast<size_t>(left.next)].prev = candidate.left;
        }
        consider(left.prev);
        consider(candidate.left);
    }
    for (int i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
        const Symbol& symbol = symbols[static_cast<size_t>(i)];
        const auto it = vocab_.find(text.substr(symbol.start, symbol.length));
        if (it == vocab_.end()) {
            throw EngineError(ERR_MODEL_CORRUPT, "tokenizer.json: the merges make '" +
                                                     text.substr(symbol.start, symbol.length) +
                                                     "', which is not in the vocabulary");
        }
        out.push_back(it->second);
    }
}
