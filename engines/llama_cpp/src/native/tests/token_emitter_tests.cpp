// The token emitter against a reference: what the callback receives must be the generated text up to the
// first stop string, each token once, in order, with its own text (the last one cut where the stop begins),
// however the text is split into tokens, UTF-8 characters included.
#include <random>
#include <string>
#include <vector>

#include "../token_emitter.h"
#include "check.h"

namespace {

struct Received {
    std::vector<int32_t> tokens;
    std::vector<std::string> texts;
    int refuse_at = -1;  // the callback asks to stop at this token (its index), or never
    int polls = 0;
};

int32_t on_token(void* user_data, const TokenResult* token) {
    auto* received = static_cast<Received*>(user_data);
    if (token == nullptr) {
        ++received->polls;
        return 0;
    }
    received->tokens.push_back(token->token_id);
    received->texts.emplace_back(token->text, static_cast<size_t>(token->text_len));
    return static_cast<int>(received->tokens.size()) - 1 == received->refuse_at ? 1 : 0;
}

struct Expected {
    std::string text;   // what the callback must receive, all tokens together
    size_t min_tokens;  // how many tokens it receives: those that start before the stop string...
    size_t max_tokens;  // ...and perhaps empty ones (a special token's text) right where it starts
    bool stopped;       // whether a stop string ended it
};

// The text up to the earliest stop string, found after the piece that completes it; the tokens that start
// before it.
Expected reference(const std::vector<std::string>& pieces, const std::vector<std::string>& stops) {
    std::string text;
    for (size_t i = 0; i < pieces.size(); ++i) {
        text += pieces[i];
        size_t cut = std::string::npos;
        for (const std::string& stop : stops) {
            if (!stop.empty()) cut = std::min(cut, text.find(stop));
        }
        if (cut != std::string::npos) {
            size_t tokens = 0;
            size_t start = 0;
            while (tokens <= i && start < cut) start += pieces[tokens++].size();
            size_t with_empty = tokens;
            while (with_empty <= i && pieces[with_empty].empty()) ++with_empty;
            return {text.substr(0, cut), tokens, with_empty, true};
        }
    }
    return {text, pieces.size(), pieces.size(), false};
}

void check_case(const std::vector<std::string>& pieces, const std::vector<std::string>& stops,
                const std::string& name) {
    Received received;
    TokenEmitter emitter(stops, on_token, &received);
    TokenEmitter::Outcome outcome = TokenEmitter::Outcome::Continue;
    for (size_t i = 0; i < pieces.size() && outcome == TokenEmitter::Outcome::Continue; ++i) {
        outcome = emitter.push(static_cast<int32_t>(i), 0.0f, pieces[i].data(), pieces[i].size());
    }
    if (outcome == TokenEmitter::Outcome::Continue) outcome = emitter.flush();

    const Expected expected = reference(pieces, stops);
    std::string all;
    bool own_text = true;
    for (size_t i = 0; i < received.texts.size(); ++i) {
        all += received.texts[i];
        const bool last = i + 1 == received.texts.size();
        own_text = own_text && received.tokens[i] == static_cast<int32_t>(i) &&
                   (received.texts[i] == pieces[i] ||
                    (last && expected.stopped && pieces[i].rfind(received.texts[i], 0) == 0));
    }
    CHECK_MSG(all == expected.text, name + ": received \"" + all + "\", expected \"" + expected.text + "\"");
    CHECK_MSG(received.tokens.size() >= expected.min_tokens && received.tokens.size() <= expected.max_tokens,
              name + ": " + std::to_string(received.tokens.size()) + " tokens received, expected " +
                  std::to_string(expected.min_tokens) + " to " + std::to_string(expected.max_tokens));
    CHECK_MSG(own_text, name + ": a token arrived out of order or without its own text");
    CHECK_MSG((outcome == TokenEmitter::Outcome::StopString) == expected.stopped, name + ": wrong outcome");
}

void examples() {
    check_case({"Hel", "lo", " wor", "ld"}, {}, "no stop strings");
    check_case({"Hel", "lo", " wor", "ld"}, {"lo w"}, "a stop string across three tokens");
    check_case({"ab", "cEN", "Dx"}, {"END"}, "a stop string starting mid-token");
    check_case({"a", "E", "N", "x", "END"}, {"END"}, "a false start of a stop string, released");
    check_case({"abc", "d"}, {"bc", "abcd"}, "the stop string completed first wins");
    check_case({"x", "\xC3", "\xA9", "!"}, {"\xC3\xA9!"}, "a stop string with a character split across tokens");
    check_case({"caf\xC3", "\xA9 ok"}, {"\xA9"}, "a stop string that is half a character");
    check_case({"END"}, {"END"}, "a stop string as the first token");
    check_case({"E", "N"}, {"END"}, "the generation ends inside a stop string's start: all of it is released");
    check_case({"a", "b"}, {""}, "an empty stop string is ignored");
}

// Random texts over a small alphabet (so stop strings occur often), split at random, UTF-8 bytes included.
void random_splits() {
    std::mt19937 rng(42);
    const std::vector<std::string> atoms = {"a", "b", "E", "N", "D", "\xC3", "\xA9", "\xE2\x82\xAC", " "};
    const std::vector<std::string> stop_pool = {"END", "ab", "\xC3\xA9", "N\xE2\x82\xAC", "a a", "DD", "b\xC3"};
    for (int round = 0; round < 3000; ++round) {
        std::vector<std::string> pieces(1 + rng() % 12);
        for (std::string& piece : pieces) {
            for (unsigned i = rng() % 4; i > 0; --i) piece += atoms[rng() % atoms.size()];
        }
        std::vector<std::string> stops;
        for (unsigned i = rng() % 3; i > 0; --i) stops.push_back(stop_pool[rng() % stop_pool.size()]);
        check_case(pieces, stops, "random split " + std::to_string(round));
    }
}

void refusal_and_polls() {
    Received received;
    received.refuse_at = 1;
    TokenEmitter emitter({"zz"}, on_token, &received);
    CHECK(emitter.push(0, 0.0f, "a", 1) == TokenEmitter::Outcome::Continue);
    CHECK(emitter.push(1, 0.0f, "b", 1) == TokenEmitter::Outcome::Refused);
    CHECK(emitter.poll() == TokenEmitter::Outcome::Continue);
    CHECK(received.polls == 1 && received.tokens.size() == 2);
}

}  // namespace

void token_emitter_tests() {
    examples();
    random_splits();
    refusal_and_polls();
}
