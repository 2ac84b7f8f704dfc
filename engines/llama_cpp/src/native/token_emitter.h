// Hands generated tokens to the host's callback, applying the stop strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "engine_api.h"

// Text that may be the start of a stop string is held back, with the tokens it came from, until the next
// tokens show whether the stop string follows: each token reaches the callback once, with its own text (cut
// short where a stop string begins), so token ids, text and logprobs stay together.
class TokenEmitter {
public:
    enum class Outcome {
        Continue,
        StopString,  // a stop string was met; nothing from it on was emitted
        Refused,     // the callback asked to stop
    };

    TokenEmitter(std::vector<std::string> stops, EngineTokenCallback callback, void* user_data);

    Outcome push(int32_t token, float logprob, const char* piece, size_t piece_len);
    // Emits every held token: the generation ended for another reason.
    Outcome flush();
    // Asks the callback whether to go on, emitting nothing (a NULL token).
    Outcome poll();

private:
    struct Held {
        int32_t token;
        float logprob;
        size_t end;  // held text_ of this token ends here
    };

    // Emits held tokens whose text ends at or before `safe_end`; with `cut`, every held token that starts
    // before `safe_end`, cut there, and drops the rest.
    Outcome emit_held(size_t safe_end, bool cut);
    bool emit(int32_t token, float logprob, const char* text, size_t len);

    std::vector<std::string> stops_;
    size_t longest_stop_ = 0;
    EngineTokenCallback callback_;
    void* user_data_;
    std::string text_;  // held text, from the first held token on
    std::deque<Held> held_;
};
