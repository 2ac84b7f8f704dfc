// What other threads ask of a model: its prompts' tokens, a generation queued for the decode loop
// (scheduler.cpp), the loop's end, its counters.
#include "model.h"

EngineError Model::tokenize(const char* text, int32_t len, bool add_special, bool parse_special,
                            const std::function<bool()>& keep_going, std::vector<llama_token>* tokens,
                            bool* cancelled) const {
    if (EngineError error = tokenizer_.tokenize(text, static_cast<size_t>(len), add_special, parse_special, keep_going,
                                                tokens, cancelled)) {
        return error;
    }
    if (*cancelled) {
        return {};
    }
    const size_t n = tokens->size();
    if (n == 0) {
        return engine_error(ERR_INVALID_ARGUMENT, "the prompt is empty");
    }
    if (n >= static_cast<size_t>(n_ctx_request_)) {
        return engine_error(ERR_CONTEXT_OVERFLOW, "the prompt is " + std::to_string(n) +
                                                      " tokens, which leaves no room in the context of " +
                                                      std::to_string(n_ctx_request_));
    }
    return {};
}

void Model::generate(GenerationRequest* request) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopping_) {
        request->error = engine_error(ERR_MODEL_NOT_LOADED, "the model was unloaded");
        return;
    }
    queue_.push_back(request);
    queued_ = static_cast<int32_t>(queue_.size());
    wake_.notify_one();
    request->done_cv.wait(lock, [&] { return request->done; });
}

void Model::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (loop_.joinable()) {
        loop_.join();
    }
    fail_all(engine_error(ERR_MODEL_NOT_LOADED, "the model was unloaded"));
}

ModelStats Model::stats() const {
    ModelStats stats;
    stats.running = running_;
    stats.waiting = queued_;
    stats.kv_used = kv_used_;
    stats.kv_total = static_cast<uint64_t>(n_ctx_request_) * slots_.size();
    return stats;
}
