// Token sampling over a row of logits.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

struct SamplingParams {
    float temperature = 0.0f;  // 0 = greedy
    float top_p = 1.0f;        // >= 1 = off
    int32_t top_k = 0;         // 0 = off
    float min_p = 0.0f;        // 0 = off
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    uint64_t seed = 0;
};

// Works on the raw logits rather than llama.cpp's llama_token_data_array sampler chain: with a 128k
// vocabulary, filling that array and soft-maxing or sorting all of it for every token costs about as much as
// a small model's forward pass. Here greedy is one max pass, top-k one selection pass, and the other cuts are
// masks over one vectorised pass of exponentials.
//
// The distribution a token is drawn from: logits minus the penalties, divided by the temperature, cut to the
// top_k most likely, then to those with at least min_p x the top probability, then to the smallest set whose
// probability reaches top_p; soft-maxed over what is left. Greedy takes the most likely token and reports its
// log-probability under the soft-max of the penalised logits (temperature 1, no cuts).
class Sampler {
public:
    explicit Sampler(const SamplingParams& params);

    // Chooses the next token from `logits` (n_vocab floats; the penalties are applied to them in place).
    // When `logprob` is not null, stores the token's natural-log probability there.
    int32_t sample(float* logits, int32_t n_vocab, float* logprob);

    // Records a generated token for the presence and frequency penalties.
    void accept(int32_t token);

private:
    struct Candidate {
        float logit;
        int32_t id;
    };

    void apply_penalties(float* logits) const;
    int32_t sample_top_k(const float* logits, int32_t n_vocab, float* logprob);
    int32_t sample_vocabulary(const float* logits, int32_t n_vocab, float* logprob);
    float top_p_floor(const float* logits, int32_t n_vocab, float max_logit);
    size_t draw(const std::vector<float>& weights, float* logprob);
    double uniform();

    SamplingParams params_;
    float inv_temperature_;
    std::mt19937_64 rng_;
    std::unordered_map<int32_t, int32_t> counts_;  // generated token -> times, for the penalties
    std::vector<Candidate> candidates_;
    std::vector<float> weights_;
    std::vector<int32_t> buckets_;
    std::vector<double> sums_;
};
