// The decode loop: continuous batching, as llama-server does. The slots are the loop's alone and are touched
// without a lock: everything here runs on the loop's thread, and stop() calls fail_all() only once it has ended.
#include <algorithm>

#include "llama_library.h"
#include "model.h"
#include "slot.h"

// The decode loop's thread. An exception ends the loop and fails what it holds, rather than the process;
// generate() then refuses new requests.
void Model::run() {
    try {
        while (step()) {
            publish_stats();
        }
    } catch (const std::exception& error) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        const bool memory = dynamic_cast<const std::bad_alloc*>(&error) != nullptr;
        fail_all(engine_error(memory ? ERR_OUT_OF_MEMORY : ERR_INTERNAL,
                              std::string("llama_cpp: the model's decode loop stopped: ") + error.what()));
    }
}

// One round of continuous batching: hand arrived requests to free slots, then decode one batch holding the
// pending token of every generating slot and as much prompt as fits, then sample for every slot that got logits.
bool Model::step() {
    std::vector<GenerationRequest*> arrived;
    if (!admit(&arrived)) {
        return false;
    }
    for (GenerationRequest* request : arrived) {
        assign(choose_slot(*request), request);
    }
    batch_.n_tokens = 0;
    add_generated_tokens();
    add_prompt_chunks();
    if (batch_.n_tokens > 0) {
        decode_and_sample();
    }
    return true;
}

bool Model::admit(std::vector<GenerationRequest*>* arrived) {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto busy = [&] {
        return std::any_of(slots_.begin(), slots_.end(), [](const auto& slot) { return slot->request; });
    };
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || busy(); });
    if (stopping_) {
        return false;
    }
    size_t free_slots = std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return !s->request; });
    while (!queue_.empty() && arrived->size() < free_slots) {
        arrived->push_back(queue_.front());
        queue_.pop_front();
    }
    queued_ = static_cast<int32_t>(queue_.size());
    return true;
}

// The free slot whose cached tokens share the longest prefix with the prompt, when that prefix is a real part of
// what the slot holds; else the least recently used. Without the second condition two prompts that share only
// the chat template's header would evict each other's cache in turn (llama.cpp's server has the same rule:
// --slot-prompt-similarity 0.1).
Model::Slot& Model::choose_slot(const GenerationRequest& request) {
    Slot* reuse = nullptr;
    Slot* oldest = nullptr;
    size_t best_shared = 0;
    for (auto& slot : slots_) {
        if (slot->request != nullptr) {
            continue;
        }
        const auto mismatch =
            std::mismatch(slot->cached.begin(), slot->cached.end(), request.prompt.begin(), request.prompt.end());
        const size_t shared = static_cast<size_t>(mismatch.first - slot->cached.begin());
        if (shared > best_shared && shared * 10 >= slot->cached.size()) {
            reuse = slot.get();
            best_shared = shared;
        }
        if (oldest == nullptr || slot->last_used < oldest->last_used) {
            oldest = slot.get();
        }
    }
    return reuse != nullptr ? *reuse : *oldest;
}

void Model::assign(Slot& slot, GenerationRequest* request) {
    // Keep the K/V of the prefix the prompt shares with what the sequence holds; the prompt's last token is
    // decoded again in any case, for its logits.
    const size_t shared = static_cast<size_t>(
        std::mismatch(slot.cached.begin(), slot.cached.end(), request->prompt.begin(), request->prompt.end()).first -
        slot.cached.begin());
    size_t keep = std::min(shared, request->prompt.size() - 1);
    llama_memory_t memory = lib.llama_get_memory(ctx_);
    if (!lib.llama_memory_seq_rm(memory, slot.seq, static_cast<llama_pos>(keep), -1)) {
        lib.llama_memory_seq_rm(memory, slot.seq, -1, -1);
        keep = 0;
    }
    slot.cached.resize(keep);
    slot.prompt_done = keep;
    slot.request = request;
    slot.sampler.emplace(request->sampling);
    slot.emitter.emplace(request->stops, request->on_token, request->user_data);
}

void Model::add_to_batch(const Slot& slot, llama_token token, bool output) {
    const int32_t i = batch_.n_tokens++;
    batch_.token[i] = token;
    batch_.pos[i] = static_cast<llama_pos>(slot.cached.size());
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = slot.seq;
    batch_.logits[i] = output;
}

// The generating slots go first, so that a long prompt arriving does not stall the requests already generating;
// prompts take the room left.
void Model::add_generated_tokens() {
    for (auto& slot : slots_) {
        slot->output = -1;
        if (slot->generating()) {
            slot->output = batch_.n_tokens;
            add_to_batch(*slot, slot->next, true);
            slot->cached.push_back(slot->next);
        }
    }
}

// A prompt longer than the room left is decoded over several rounds, so that the generating slots get a token
// every round meanwhile. Only a prompt's last token asks for logits: the context keeps one row per sequence.
void Model::add_prompt_chunks() {
    for (auto& slot : slots_) {
        if (!slot->prompting() || batch_.n_tokens == batch_capacity_) {
            continue;
        }
        // Between prompt batches the host may cancel a request that has not produced a token yet.
        if (slot->emitter->poll() == TokenEmitter::Outcome::Refused) {
            finish(*slot, ENGINE_FINISH_CANCELLED);
            continue;
        }
        const std::vector<llama_token>& prompt = slot->request->prompt;
        const size_t take =
            std::min(prompt.size() - slot->prompt_done, static_cast<size_t>(batch_capacity_ - batch_.n_tokens));
        for (size_t i = 0; i < take; ++i) {
            const llama_token token = prompt[slot->prompt_done++];
            const bool last = slot->prompt_done == prompt.size();
            if (last) {
                slot->output = batch_.n_tokens;
            }
            add_to_batch(*slot, token, last);
            slot->cached.push_back(token);
        }
    }
}

void Model::decode_and_sample() {
    LogCapture log;
    const int32_t status = lib.llama_decode(ctx_, batch_);
    if (status != 0) {
        const std::string said = log.text();
        fail_slots(engine_error(
            ERR_INTERNAL, "llama_decode failed (" + std::to_string(status) + ")" + (said.empty() ? "" : ": " + said)));
        return;
    }
    for (auto& slot : slots_) {
        if (slot->output < 0) {
            continue;
        }
        const float* logits = lib.llama_get_logits_ith(ctx_, slot->output);
        if (logits == nullptr) {
            fail(*slot, engine_error(ERR_INTERNAL, "llama.cpp gave no logits for the request: " + log.text()));
            continue;
        }
        take_token(*slot, logits);
    }
}

void Model::take_token(Slot& slot, const float* logits_row) {
    GenerationRequest& request = *slot.request;
    float logprob = 0.0f;
    // The row is llama.cpp's output buffer, rewritten by the next decode; the penalties and a JSON Schema's
    // constraint may edit it in place.
    float* logits = const_cast<float*>(logits_row);
    for (const auto& [biased, bias] : request.logit_bias) {
        logits[biased] += bias;
    }
    if (request.constraint) {
        request.constraint->mask(logits, n_vocab_);
    }
    const llama_token token = slot.sampler->sample(logits, n_vocab_, request.logprobs ? &logprob : nullptr);
    slot.sampler->accept(token);
    if (request.constraint) {
        if (EngineError error = request.constraint->accept(token)) {
            fail(slot, error);
            return;
        }
    }
    ++request.completion_tokens;

    TokenEmitter::Outcome outcome;
    int32_t reason = ENGINE_FINISH_STOP;
    if (!request.ignore_eos && lib.llama_vocab_is_eog(vocab_, token)) {
        outcome = slot.emitter->flush();  // the end-of-generation token itself is counted, not emitted
    } else {
        char piece[128];
        std::string long_piece;
        const char* text = piece;
        int32_t length = lib.llama_token_to_piece(vocab_, token, piece, sizeof piece, 0, false);
        if (length < 0) {
            long_piece.resize(static_cast<size_t>(-length));
            length = lib.llama_token_to_piece(vocab_, token, long_piece.data(), -length, 0, false);
            text = long_piece.data();
        }
        outcome = slot.emitter->push(token, logprob, text, static_cast<size_t>(std::max(length, 0)));
        if (outcome == TokenEmitter::Outcome::Continue) {
            const bool at_max_tokens = request.max_tokens > 0 && request.completion_tokens >= request.max_tokens;
            // The prompt and the generated tokens (this one not yet decoded) fill the request's context.
            const bool context_full = slot.cached.size() + 1 >= static_cast<size_t>(n_ctx_request_);
            if (!at_max_tokens && !context_full) {
                slot.next = token;
                return;
            }
            reason = ENGINE_FINISH_LENGTH;
            outcome = slot.emitter->flush();
        }
    }
    finish(slot, outcome == TokenEmitter::Outcome::Refused ? ENGINE_FINISH_CANCELLED : reason);
}

void Model::publish_stats() {
    int32_t running = 0;
    uint64_t kv_used = 0;
    for (const auto& slot : slots_) {
        if (slot->request != nullptr) {
            running += 1;
            kv_used += slot->cached.size();
        }
    }
    running_ = running;
    kv_used_ = kv_used;
}

void Model::finish(Slot& slot, int32_t reason) {
    GenerationRequest* request = slot.request;
    slot.request = nullptr;
    slot.sampler.reset();
    slot.emitter.reset();
    slot.last_used = ++clock_;
    std::lock_guard<std::mutex> lock(mutex_);
    request->finish_reason = reason;
    request->done = true;
    request->done_cv.notify_one();
}

void Model::fail(Slot& slot, EngineError error) {
    slot.request->error = std::move(error);
    lib.llama_memory_seq_rm(lib.llama_get_memory(ctx_), slot.seq, -1, -1);
    slot.cached.clear();
    finish(slot, ENGINE_FINISH_STOP);
}

void Model::fail_slots(const EngineError& error) {
    for (auto& slot : slots_) {
        if (slot->request != nullptr) {
            fail(*slot, error);
        }
    }
}

void Model::fail_all(const EngineError& error) {
    fail_slots(error);
    std::lock_guard<std::mutex> lock(mutex_);
    for (GenerationRequest* request : queue_) {
        request->error = error;
        request->done = true;
        request->done_cv.notify_one();
    }
    queue_.clear();
}
