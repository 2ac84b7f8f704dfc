#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace {

// The loops below are written for the auto-vectoriser (`omp simd` needs -fopenmp-simd, which enables only
// these pragmas, no OpenMP runtime). On x86-64 with GCC or Clang each kernel also gets an AVX2 clone chosen at
// load time (x86-64-v3: AVX2 + FMA; v4: AVX-512), since the portable baseline is SSE2 and these loops run over
// the whole vocabulary per token.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__ELF__)
#  define VOCAB_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#  define VOCAB_KERNEL
#endif

constexpr int32_t kBlock = 1024;     // block size of the two-level scans (argmax, min-p, the draw)
constexpr int32_t kTopKBlock = 128;  // top-k skips blocks whose maximum cannot enter the heap

// e^x for x <= 0, within 2 ulp: reduction to r in [-ln2/2, ln2/2] and Cephes' expf polynomial, in branch-free
// arithmetic that vectorises. Inputs below -86 give about e^-86 instead of underflowing (harmless in sums).
inline float exp_nonpositive(float x) {
    x = std::max(x, -86.0f);            // a vector max only under -fno-trapping-math (set in CMakeLists.txt)
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer held in the low bits
    const float t = x * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    int32_t n_bits;
    std::memcpy(&n_bits, &t, sizeof t);
    n_bits -= 0x4B400000;  // the bits of `shifter`
    const float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t p_bits;
    std::memcpy(&p_bits, &p, sizeof p);
    p_bits += n_bits << 23;  // times 2^n
    std::memcpy(&p, &p_bits, sizeof p);
    return p;
}

VOCAB_KERNEL float max_of(const float* x, int32_t n) {
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int32_t i = 0; i < n; ++i) {
        m = x[i] > m ? x[i] : m;
    }
    return m;
}

VOCAB_KERNEL float min_of(const float* x, int32_t n) {
    float m = std::numeric_limits<float>::infinity();
#pragma omp simd reduction(min : m)
    for (int32_t i = 0; i < n; ++i) {
        m = x[i] < m ? x[i] : m;
    }
    return m;
}

VOCAB_KERNEL float sum_of(const float* x, int32_t n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int32_t i = 0; i < n; ++i) {
        sum += x[i];
    }
    return sum;
}

// out[i] = e^((x[i] - shift) * scale), for shift >= every x[i] and scale > 0.
VOCAB_KERNEL void exp_scaled(const float* x, int32_t n, float shift, float scale, float* out) {
#pragma omp simd
    for (int32_t i = 0; i < n; ++i) {
        out[i] = exp_nonpositive((x[i] - shift) * scale);
    }
}

VOCAB_KERNEL float sum_exp_scaled(const float* x, int32_t n, float shift, float scale) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int32_t i = 0; i < n; ++i) {
        sum += exp_nonpositive((x[i] - shift) * scale);
    }
    return sum;
}

// weights[i] = 0 where x[i] < floor.
VOCAB_KERNEL void mask_below(const float* x, int32_t n, float floor, float* weights) {
#pragma omp simd
    for (int32_t i = 0; i < n; ++i) {
        weights[i] = x[i] < floor ? 0.0f : weights[i];
    }
}

// out[i] = min(last, (int) ((top - x[i]) * scale)): bucket numbers, 0 for the largest x.
VOCAB_KERNEL void bucket_numbers(const float* x, int32_t n, float top, float scale, int32_t last, int32_t* out) {
#pragma omp simd
    for (int32_t i = 0; i < n; ++i) {
        const int32_t b = static_cast<int32_t>((top - x[i]) * scale);
        out[i] = b < last ? b : last;
    }
}

// The first index of the largest logit: block maxima (vectorised), then one scan of the winning block.
int32_t argmax(const float* x, int32_t n) {
    float best = -std::numeric_limits<float>::infinity();
    int32_t best_block = 0;
    for (int32_t b = 0; b < n; b += kBlock) {
        const float m = max_of(x + b, std::min(kBlock, n - b));
        if (m > best) {
            best = m;
            best_block = b;
        }
    }
    const int32_t end = std::min(best_block + kBlock, n);
    for (int32_t i = best_block; i < end; ++i) {
        if (x[i] == best) {
            return i;
        }
    }
    return best_block;  // only when every logit is NaN
}

}  // namespace

Sampler::Sampler(const SamplingParams& params)
    : params_(params),
      inv_temperature_(params.temperature > 0.0f ? 1.0f / params.temperature : 1.0f),
      rng_(params.seed) {}

void Sampler::accept(int32_t token) {
    if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
        ++counts_[token];
    }
}

// OpenAI semantics: each token already generated loses presence_penalty once and frequency_penalty per use.
void Sampler::apply_penalties(float* logits) const {
    for (const auto& [token, count] : counts_) {
        logits[token] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
}

double Sampler::uniform() {
    return static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // [0, 1), the same on every standard library
}

int32_t Sampler::sample(float* logits, int32_t n_vocab, float* logprob) {
    apply_penalties(logits);
    if (params_.temperature <= 0.0f) {
        const int32_t token = argmax(logits, n_vocab);
        if (logprob != nullptr) {
            double sum = 0.0;
            for (int32_t b = 0; b < n_vocab; b += kBlock) {
                sum += sum_exp_scaled(logits + b, std::min(kBlock, n_vocab - b), logits[token], 1.0f);
            }
            *logprob = static_cast<float>(-std::log(sum));
        }
        return token;
    }
    if (params_.top_k > 0 && params_.top_k < n_vocab) {
        return sample_top_k(logits, n_vocab, logprob);
    }
    return sample_vocabulary(logits, n_vocab, logprob);
}

// One pass keeps the k largest logits in a min-heap (blocks whose maximum cannot enter it are skipped whole);
// min-p and top-p then cut the sorted k.
int32_t Sampler::sample_top_k(const float* logits, int32_t n_vocab, float* logprob) {
    const int32_t k = params_.top_k;
    const auto smaller_first = [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; };
    candidates_.clear();
    for (int32_t i = 0; i < k; ++i) {
        candidates_.push_back({logits[i], i});
    }
    std::make_heap(candidates_.begin(), candidates_.end(), smaller_first);
    for (int32_t b = k; b < n_vocab; b += kTopKBlock) {
        const int32_t end = std::min(b + kTopKBlock, n_vocab);
        if (max_of(logits + b, end - b) <= candidates_.front().logit) {
            continue;
        }
        for (int32_t i = b; i < end; ++i) {
            if (logits[i] > candidates_.front().logit) {
                std::pop_heap(candidates_.begin(), candidates_.end(), smaller_first);
                candidates_.back() = {logits[i], i};
                std::push_heap(candidates_.begin(), candidates_.end(), smaller_first);
            }
        }
    }
    std::sort_heap(candidates_.begin(), candidates_.end(), smaller_first);  // largest first

    const float max_logit = candidates_.front().logit;
    weights_.resize(candidates_.size());
    for (size_t i = 0; i < candidates_.size(); ++i) {
        weights_[i] = exp_nonpositive((candidates_[i].logit - max_logit) * inv_temperature_);
    }
    size_t kept = candidates_.size();
    if (params_.min_p > 0.0f) {
        kept = std::find_if(weights_.begin(), weights_.end(), [&](float w) { return w < params_.min_p; }) -
               weights_.begin();
    }
    if (params_.top_p < 1.0f) {
        double total = 0.0;
        for (size_t i = 0; i < kept; ++i) {
            total += weights_[i];
        }
        double cumulative = 0.0;
        for (size_t i = 0; i < kept; ++i) {
            cumulative += weights_[i];
            if (cumulative >= params_.top_p * total) {
                kept = i + 1;
                break;
            }
        }
    }
    weights_.resize(kept);
    return candidates_[draw(weights_, logprob)].id;
}

// Every token is a candidate: one vectorised pass of exponentials, min-p and top-p as masks over it.
int32_t Sampler::sample_vocabulary(const float* logits, int32_t n_vocab, float* logprob) {
    const float max_logit = max_of(logits, n_vocab);
    weights_.resize(n_vocab);
    exp_scaled(logits, n_vocab, max_logit, inv_temperature_, weights_.data());
    if (params_.min_p > 0.0f) {
        // p_i >= min_p * p_max  <=>  logit_i >= max_logit + T * ln(min_p)
        mask_below(logits, n_vocab, max_logit + params_.temperature * std::log(params_.min_p), weights_.data());
    }
    if (params_.top_p < 1.0f) {
        mask_below(logits, n_vocab, top_p_floor(logits, n_vocab, max_logit), weights_.data());
    }
    return static_cast<int32_t>(draw(weights_, logprob));
}

// The smallest logit of the most-likely set whose weight (weights_) reaches top_p of the total. Sorting the
// vocabulary is avoided: tokens are bucketed by logit in one pass, whole buckets above the one where the
// weight crosses top_p are in, and only that bucket is sorted.
float Sampler::top_p_floor(const float* logits, int32_t n_vocab, float max_logit) {
    constexpr int32_t kBuckets = 1024;
    // Buckets span the scaled logits, at most 40 below the top (e^-40 weighs nothing next to it).
    const float span = std::min((max_logit - min_of(logits, n_vocab)) * inv_temperature_, 40.0f);
    const float scale = span > 0.0f ? inv_temperature_ * (kBuckets - 1) / span : 0.0f;
    buckets_.resize(n_vocab);
    bucket_numbers(logits, n_vocab, max_logit, scale, kBuckets - 1, buckets_.data());
    sums_.assign(kBuckets, 0.0);
    double total = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) {
        sums_[buckets_[i]] += weights_[i];
    }
    for (double sum : sums_) {
        total += sum;
    }
    const double target = params_.top_p * total;
    double above = 0.0;  // weight of the buckets before `crossing`
    int32_t crossing = 0;
    while (crossing + 1 < kBuckets && above + sums_[crossing] < target) {
        above += sums_[crossing++];
    }

    candidates_.clear();
    for (int32_t i = 0; i < n_vocab; ++i) {
        if (buckets_[i] == crossing && weights_[i] > 0.0f) {
            candidates_.push_back({logits[i], i});
        }
    }
    std::sort(candidates_.begin(), candidates_.end(),
              [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; });
    for (const Candidate& c : candidates_) {
        above += weights_[c.id];
        if (above >= target) {
            return c.logit;
        }
    }
    return -std::numeric_limits<float>::infinity();  // rounding left the target out of reach: keep all
}

// Draws an index with probability proportional to weights (not all zero). Block sums let the walk to the
// drawn index skip whole blocks.
size_t Sampler::draw(const std::vector<float>& weights, float* logprob) {
    const int32_t n = static_cast<int32_t>(weights.size());
    sums_.clear();
    double total = 0.0;
    for (int32_t b = 0; b < n; b += kBlock) {
        sums_.push_back(sum_of(weights.data() + b, std::min(kBlock, n - b)));
        total += sums_.back();
    }
    double left = uniform() * total;
    size_t block = 0;
    while (block + 1 < sums_.size() && (left >= sums_[block] || sums_[block] == 0.0)) {
        left -= sums_[block];
        ++block;
    }
    const int32_t begin = static_cast<int32_t>(block) * kBlock;
    const int32_t end = std::min(begin + kBlock, n);
    int32_t chosen = -1;
    for (int32_t i = begin; i < end; ++i) {
        if (weights[i] > 0.0f) {
            chosen = i;  // where rounding leaves `left` past the block's last weight, its last positive one
            left -= weights[i];
            if (left < 0.0) {
                break;
            }
        }
    }
    if (logprob != nullptr) {
        *logprob = static_cast<float>(std::log(weights[chosen] / total));
    }
    return static_cast<size_t>(chosen);
}
