// The sampler against a straightforward reference: the distribution written out as its documentation states
// it (penalised logits over the temperature, cut to top_k, then min_p, then top_p, soft-maxed), computed in
// double with std::exp and a full sort.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../sampler.h"
#include "check.h"

namespace {

// Probability of each token under the reference distribution (0 for the tokens cut).
std::vector<double> reference(const std::vector<float>& logits, const SamplingParams& p) {
    const size_t n = logits.size();
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
    const double top = logits[order[0]];
    size_t kept = p.top_k > 0 ? std::min(n, static_cast<size_t>(p.top_k)) : n;
    std::vector<double> weight(n, 0.0);
    for (size_t i = 0; i < kept; ++i) {
        weight[order[i]] = std::exp((logits[order[i]] - top) / p.temperature);
    }
    if (p.min_p > 0.0f) {
        while (kept > 0 && weight[order[kept - 1]] < p.min_p) weight[order[--kept]] = 0.0;
    }
    if (p.top_p < 1.0f) {
        double total = 0.0;
        for (size_t i = 0; i < kept; ++i) total += weight[order[i]];
        double cumulative = 0.0;
        for (size_t i = 0; i < kept; ++i) {
            cumulative += weight[order[i]];
            if (cumulative >= p.top_p * total) {
                for (size_t j = i + 1; j < kept; ++j) weight[order[j]] = 0.0;
                break;
            }
        }
    }
    const double total = std::accumulate(weight.begin(), weight.end(), 0.0);
    for (double& w : weight) w /= total;
    return weight;
}

std::vector<float> random_logits(size_t n, uint64_t seed, float spread) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, spread);
    std::vector<float> logits(n);
    for (float& logit : logits) logit = normal(rng);
    return logits;
}

std::string describe(const SamplingParams& p) {
    char text[128];
    std::snprintf(text, sizeof text, "T=%g top_k=%d min_p=%g top_p=%g", p.temperature, p.top_k, p.min_p, p.top_p);
    return text;
}

// Every draw is a token the reference keeps, reported with the reference's log-probability; over many draws
// the frequencies match the reference's probabilities.
void check_distribution(const std::vector<float>& logits, const SamplingParams& params, int draws, bool frequencies) {
    const std::vector<double> p = reference(logits, params);
    Sampler sampler(params);
    std::vector<int> seen(logits.size(), 0);
    int outside = 0;
    int wrong_logprob = 0;
    for (int i = 0; i < draws; ++i) {
        std::vector<float> row = logits;
        float logprob = 0.0f;
        const int32_t token = sampler.sample(row.data(), static_cast<int32_t>(row.size()), &logprob);
        if (token < 0 || static_cast<size_t>(token) >= logits.size() || p[token] == 0.0) {
            ++outside;
            continue;
        }
        ++seen[token];
        if (std::abs(logprob - std::log(p[token])) > 1e-4 + 1e-5 * std::abs(std::log(p[token]))) ++wrong_logprob;
    }
    CHECK_MSG(outside == 0, describe(params) + ": " + std::to_string(outside) + " draws of tokens the reference cuts");
    CHECK_MSG(wrong_logprob == 0,
              describe(params) + ": " + std::to_string(wrong_logprob) + " logprobs off the reference's");
    if (!frequencies) return;
    for (size_t t = 0; t < logits.size(); ++t) {
        const double expected = p[t] * draws;
        const double sigma = std::sqrt(draws * p[t] * (1 - p[t]));
        CHECK_MSG(std::abs(seen[t] - expected) <= 5 * sigma + 1, describe(params) + ": token " + std::to_string(t) +
                                                                     " drawn " + std::to_string(seen[t]) +
                                                                     " times, expected " + std::to_string(expected));
    }
}

void greedy_and_penalties() {
    std::vector<float> logits = random_logits(1000, 7, 2.0f);
    const int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    double sum = 0.0;
    for (float logit : logits) sum += std::exp(static_cast<double>(logit) - logits[best]);
    Sampler greedy(SamplingParams{});
    std::vector<float> row = logits;
    float logprob = 0.0f;
    CHECK(greedy.sample(row.data(), 1000, &logprob) == best);
    CHECK(std::abs(logprob + std::log(sum)) < 1e-4);

    // Each token generated loses presence_penalty once and frequency_penalty per use, in the logits themselves.
    SamplingParams penalised;
    penalised.presence_penalty = 0.25f;
    penalised.frequency_penalty = 0.5f;
    Sampler sampler(penalised);
    std::vector<float> flat(8, 0.0f);
    flat[3] = 1.0f;
    flat[5] = 0.5f;
    sampler.accept(3);
    sampler.accept(3);
    sampler.accept(6);
    std::vector<float> penalisedRow = flat;
    CHECK(sampler.sample(penalisedRow.data(), 8, nullptr) == 5);
    CHECK(std::abs(penalisedRow[3] - (1.0f - 0.25f - 2 * 0.5f)) < 1e-6f);
    CHECK(std::abs(penalisedRow[6] - (0.0f - 0.25f - 0.5f)) < 1e-6f);
    CHECK(penalisedRow[5] == 0.5f);
}

void same_seed_same_tokens() {
    const std::vector<float> logits = random_logits(128256, 11, 3.0f);
    SamplingParams params;
    params.temperature = 0.9f;
    params.seed = 1234;
    const auto run = [&](uint64_t seed) {
        params.seed = seed;
        Sampler sampler(params);
        std::vector<int32_t> tokens;
        for (int i = 0; i < 64; ++i) {
            std::vector<float> row = logits;
            tokens.push_back(sampler.sample(row.data(), static_cast<int32_t>(row.size()), nullptr));
        }
        return tokens;
    };
    CHECK(run(1234) == run(1234));
    CHECK(run(1234) != run(1235));
}

}  // namespace

void sampler_tests() {
    greedy_and_penalties();
    same_seed_same_tokens();

    // A small vocabulary, drawn often enough to compare frequencies: every cut, alone and together.
    const std::vector<float> small = random_logits(16, 3, 1.5f);
    const SamplingParams configs[] = {
        {1.0f, 1.0f, 0, 0.0f, 0, 0, 1}, {0.5f, 1.0f, 0, 0.0f, 0, 0, 2},   {1.0f, 1.0f, 4, 0.0f, 0, 0, 3},
        {1.0f, 1.0f, 0, 0.2f, 0, 0, 4}, {1.0f, 0.8f, 0, 0.0f, 0, 0, 5},   {0.8f, 0.9f, 8, 0.05f, 0, 0, 6},
        {2.0f, 0.5f, 0, 0.1f, 0, 0, 7}, {1.3f, 0.95f, 12, 0.0f, 0, 0, 8},
    };
    for (const SamplingParams& params : configs) check_distribution(small, params, 200000, true);

    // Llama 3's vocabulary size: the vectorised passes, top-k's block skipping and top-p's buckets at full size.
    const std::vector<float> large = random_logits(128256, 5, 3.0f);
    const SamplingParams large_configs[] = {
        {0.8f, 1.0f, 0, 0.0f, 0, 0, 1}, {0.7f, 0.9f, 0, 0.0f, 0, 0, 2},  {1.0f, 0.95f, 40, 0.05f, 0, 0, 3},
        {1.0f, 1.0f, 0, 0.1f, 0, 0, 4}, {1.2f, 0.6f, 0, 0.02f, 0, 0, 5}, {0.6f, 1.0f, 100, 0.0f, 0, 0, 6},
    };
    for (const SamplingParams& params : large_configs) check_distribution(large, params, 2000, false);
}
