#include "model.h"

#include <algorithm>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "errors.h"
#include "sampler.h"
#include "token_emitter.h"

// A field of a host-filled struct is read only when the host's struct_size covers it (engine_api.h).
#define HAS_FIELD(ptr, type, field) ((ptr)->struct_size >= offsetof(type, field) + sizeof((ptr)->field))

Model::Model(const OrtRuntime& runtime, const ModelFolder& folder, const ModelOptions& options)
    : tokenizer_(read_json_file(folder.folder / "tokenizer.json")), eos_tokens_(folder.eos_tokens) {
    context_length_ = options.context_length > 0 ? options.context_length : folder.trained_context;
    if (context_length_ <= 0) {
        throw EngineError(
            ERR_INVALID_ARGUMENT,
            "the model folder does not say its context length (max_position_embeddings or context_length): "
            "give one with the load");
    }
    n_parallel_ = options.n_parallel > 0 ? options.n_parallel : k_default_parallel;
    sequences_.resize(static_cast<size_t>(n_parallel_));
    graph_ = std::make_unique<DecoderGraph>(runtime, folder.graph_file, options.n_threads, options.device_index);
    if (graph_->vocab_size() < tokenizer_.vocab_size()) {
        throw EngineError(ERR_UNSUPPORTED, "the graph's logits cover " + std::to_string(graph_->vocab_size()) +
                                               " tokens, fewer than tokenizer.json's " +
                                               std::to_string(tokenizer_.vocab_size()));
    }
    // The estimate, sized from what the graph says rather than the configuration files.
    ModelFolder measured = folder;
    measured.layers = graph_->layers();
    measured.kv_heads = static_cast<int32_t>(graph_->kv_heads());
    measured.head_dim = static_cast<int32_t>(graph_->head_dim());
    measured.vocab_size = graph_->vocab_size();
    memory_bytes_ = estimate_model_bytes(measured, context_length_, n_parallel_);
}

Model::~Model() {
    for (Sequence& sequence : sequences_) {
        graph_->release(sequence.cache);
    }
}

Model::Sequence& Model::acquire(const std::vector<int32_t>& prompt) const {
    std::unique_lock<std::mutex> lock(sequences_mutex_);
    ++waiting_;
    sequence_freed_.wait(lock, [&] {
        return std::any_of(sequences_.begin(), sequences_.end(), [](const Sequence& s) { return !s.busy; });
    });
    --waiting_;
    Sequence* chosen = nullptr;
    size_t best = 0;
    for (Sequence& sequence : sequences_) {
        if (sequence.busy) {
            continue;
        }
        // The cache must leave at least one prompt token to run: its logits choose the first new token.
        const size_t held = sequence.tokens.size();
        const bool prefix =
            held < prompt.size() && std::equal(sequence.tokens.begin(), sequence.tokens.end(), prompt.begin());
        const size_t score = prefix ? held + 1 : 0;  // the longest prefix (an empty cache is one), else any
        if (chosen == nullptr || score > best) {
            chosen = &sequence;
            best = score;
        }
    }
    chosen->busy = true;
    return *chosen;
}

void Model::release(Sequence& sequence) const {
    {
        std::lock_guard<std::mutex> lock(sequences_mutex_);
        sequence.busy = false;
    }
    sequence_freed_.notify_one();
}

void Model::stats(EngineModelStats& stats) const {
    if (HAS_FIELD(&stats, EngineModelStats, requests_running)) stats.requests_running = running_.load();
    if (HAS_FIELD(&stats, EngineModelStats, requests_waiting)) stats.requests_waiting = waiting_.load();
    if (HAS_FIELD(&stats, EngineModelStats, kv_cells_used)) stats.kv_cells_used = cells_used_.load();
    if (HAS_FIELD(&stats, EngineModelStats, kv_cells_total)) {
        stats.kv_cells_total = static_cast<uint64_t>(n_parallel_) * static_cast<uint64_t>(context_length_);
    }
}

void Model::generate(const EngineGenerateParams& params, EngineTokenCallback on_token, void* user_data,
                     EngineGenerateResult& result) const {
    const std::vector<int32_t> prompt = tokenizer_.encode(
        std::string_view(params.prompt, static_cast<size_t>(params.prompt_len)),
        (params.flags & ENGINE_GENERATE_ADD_SPECIAL) != 0, (params.flags & ENGINE_GENERATE_PARSE_SPECIAL) != 0);
    if (prompt.empty()) {
        throw EngineError(ERR_INVALID_ARGUMENT, "the prompt is empty");
    }
    if (static_cast<int32_t>(prompt.size()) >= context_length_) {
        throw EngineError(ERR_CONTEXT_OVERFLOW, "the prompt is " + std::to_string(prompt.size()) +
                                                    " tokens; the context holds " + std::to_string(context_length_));
    }
    if (HAS_FIELD(&params, EngineGenerateParams, n_logit_bias)) {
        for (int32_t i = 0; i < params.n_logit_bias; ++i) {
            if (params.logit_bias_tokens[i] < 0 || params.logit_bias_tokens[i] >= graph_->vocab_size()) {
                throw EngineError(ERR_INVALID_ARGUMENT,
                                  "logit_bias names token " + std::to_string(params.logit_bias_tokens[i]) +
                                      ", outside the vocabulary of " + std::to_string(graph_->vocab_size()));
            }
        }
    }
    Sequence& sequence = acquire(prompt);
    ++running_;
    try {
        run(params, prompt, sequence, on_token, user_data, result);
    } catch (...) {
        --running_;
        release(sequence);
        throw;
    }
    --running_;
    release(sequence);
}

void Model::run(const EngineGenerateParams& params, const std::vector<int32_t>& prompt, Sequence& sequence,
                EngineTokenCallback on_token, void* user_data, EngineGenerateResult& result) const {
    SamplingParams sampling;
    sampling.temperature = params.temperature;
    sampling.top_p = params.top_p;
    sampling.top_k = params.top_k;
    sampling.min_p = params.min_p;
    sampling.presence_penalty = params.presence_penalty;
    sampling.frequency_penalty = params.frequency_penalty;
    sampling.seed = params.seed == ENGINE_SEED_RANDOM ? std::random_device{}() : params.seed;
    Sampler sampler(sampling);

    std::vector<std::string> stops;
    for (int32_t i = 0; i < params.n_stop; ++i) {
        stops.emplace_back(params.stop[i]);
    }
    TokenEmitter emitter(std::move(stops), on_token, user_data);
    const bool want_logprob = (params.flags & ENGINE_GENERATE_LOGPROBS) != 0;
    const bool ignore_eos = (params.flags & ENGINE_GENERATE_IGNORE_EOS) != 0;
    const int32_t n_bias = HAS_FIELD(&params, EngineGenerateParams, n_logit_bias) ? params.n_logit_bias : 0;

    // The sequence's cache is kept if the prompt starts with what it holds, else started afresh. Each step adds
    // its tokens to `sequence.tokens` once it has run, so that they describe the cache however the generation ends.
    KvCache& cache = sequence.cache;
    const bool kept = sequence.tokens.size() < prompt.size() &&
                      std::equal(sequence.tokens.begin(), sequence.tokens.end(), prompt.begin());
    if (!kept || cache.tensors.empty()) {
        graph_->release(cache);
        sequence.tokens.clear();
        cache = graph_->empty_cache();
    }
    cells_used_ += static_cast<uint64_t>(cache.length);
    struct CellsRelease {
        const KvCache& cache;
        std::atomic<uint64_t>& cells;
        ~CellsRelease() { cells -= static_cast<uint64_t>(cache.length); }
    } cells_release{cache, cells_used_};

    auto finish = [&](int32_t reason, int32_t generated) {
        result.finish_reason = reason;
        result.prompt_tokens = static_cast<int32_t>(prompt.size());
        result.completion_tokens = generated;
    };

    std::vector<float> logits;
    for (size_t done = sequence.tokens.size(); done < prompt.size();) {
        if (emitter.poll() == TokenEmitter::Outcome::Refused) {
            return finish(ENGINE_FINISH_CANCELLED, 0);
        }
        const size_t n = std::min(prompt.size() - done, static_cast<size_t>(k_prompt_chunk));
        graph_->step(prompt.data() + done, n, cache, logits);
        sequence.tokens.insert(sequence.tokens.end(), prompt.begin() + static_cast<std::ptrdiff_t>(done),
                               prompt.begin() + static_cast<std::ptrdiff_t>(done + n));
        cells_used_ += n;
        done += n;
    }

    int32_t generated = 0;
    for (;;) {
        for (int32_t i = 0; i < n_bias; ++i) {
            logits[static_cast<size_t>(params.logit_bias_tokens[i])] += params.logit_bias_values[i];
        }
        float logprob = 0;
        const int32_t token = sampler.sample(logits.data(), graph_->vocab_size(), want_logprob ? &logprob : nullptr);
        sampler.accept(token);
        ++generated;
        const bool eos = std::find(eos_tokens_.begin(), eos_tokens_.end(), token) != eos_tokens_.end();
        if (eos && !ignore_eos) {
            return finish(
                emitter.flush() == TokenEmitter::Outcome::Refused ? ENGINE_FINISH_CANCELLED : ENGINE_FINISH_STOP,
                generated);
        }
        const std::string& piece = tokenizer_.piece(token);
        switch (emitter.push(token, logprob, piece.data(), piece.size())) {
            case TokenEmitter::Outcome::StopString:
                return finish(ENGINE_FINISH_STOP, generated);
            case TokenEmitter::Outcome::Refused:
                return finish(ENGINE_FINISH_CANCELLED, generated);
            case TokenEmitter::Outcome::Continue:
                break;
        }
        const bool full = static_cast<int32_t>(prompt.size()) + generated >= context_length_;
        if (full || (params.max_tokens > 0 && generated >= params.max_tokens)) {
            return finish(
                emitter.flush() == TokenEmitter::Outcome::Refused ? ENGINE_FINISH_CANCELLED : ENGINE_FINISH_LENGTH,
                generated);
        }
        graph_->step(&token, 1, cache, logits);
        sequence.tokens.push_back(token);
        ++cells_used_;
    }
}
