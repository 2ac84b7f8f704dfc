#include "token_emitter.h"

#include <algorithm>

TokenEmitter::TokenEmitter(std::vector<std::string> stops, EngineTokenCallback callback, void* user_data)
    : stops_(std::move(stops)), callback_(callback), user_data_(user_data) {
    stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
    for (const std::string& stop : stops_) {
        longest_stop_ = std::max(longest_stop_, stop.size());
    }
}

bool TokenEmitter::emit(int32_t token, float logprob, const char* text, size_t len) {
    const TokenResult result{token, static_cast<int32_t>(len), text, logprob};
    return callback_(user_data_, &result) == 0;
}

TokenEmitter::Outcome TokenEmitter::poll() {
    return callback_(user_data_, nullptr) == 0 ? Outcome::Continue : Outcome::Refused;
}

TokenEmitter::Outcome TokenEmitter::push(int32_t token, float logprob, const char* piece, size_t piece_len) {
    if (stops_.empty()) {
        return emit(token, logprob, piece, piece_len) ? Outcome::Continue : Outcome::Refused;
    }

    // A stop string not in the held text before this piece must end inside it.
    const size_t search_from = text_.size() >= longest_stop_ ? text_.size() - longest_stop_ + 1 : 0;
    text_.append(piece, piece_len);
    held_.push_back({token, logprob, text_.size()});

    size_t stop_at = std::string::npos;
    for (const std::string& stop : stops_) {
        stop_at = std::min(stop_at, text_.find(stop, search_from));
    }
    if (stop_at != std::string::npos) {
        return emit_held(stop_at, true) == Outcome::Refused ? Outcome::Refused : Outcome::StopString;
    }

    // Hold back the longest tail of the text that a stop string begins with.
    size_t safe_end = text_.size();
    for (const std::string& stop : stops_) {
        for (size_t len = std::min(stop.size() - 1, text_.size()); len > 0; --len) {
            if (text_.compare(text_.size() - len, len, stop, 0, len) == 0) {
                safe_end = std::min(safe_end, text_.size() - len);
                break;
            }
        }
    }
    return emit_held(safe_end, false);
}

TokenEmitter::Outcome TokenEmitter::flush() {
    return emit_held(text_.size(), false);
}

TokenEmitter::Outcome TokenEmitter::emit_held(size_t safe_end, bool cut) {
    size_t start = 0;
    while (!held_.empty()) {
        const Held token = held_.front();
        if (cut ? start >= safe_end : token.end > safe_end) {
            break;
        }
        held_.pop_front();
        const size_t end = std::min(token.end, safe_end);
        if (!emit(token.token, token.logprob, text_.data() + start, end - start)) {
            return Outcome::Refused;
        }
        start = token.end;
    }
    if (cut) {
        held_.clear();
        text_.clear();
        return Outcome::Continue;
    }
    text_.erase(0, start);
    for (Held& token : held_) {
        token.end -= start;
    }
    return Outcome::Continue;
}
