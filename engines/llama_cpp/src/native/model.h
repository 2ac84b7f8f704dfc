// One loaded model: llama.cpp's model and context, and the decode loop that serves its requests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "embedder.h"
#include "errors.h"
#include "json_constraint.h"
#include "llama.h"
#include "prompt_tokenizer.h"
#include "sampler.h"

// How the engine runs models, fixed by engine_init().
struct Runtime {
    std::vector<ggml_backend_dev_t> devices;  // NULL-terminated offload devices; just the NULL for cpu
    bool on_cpu = true;                       // the `cpu` backend: the model's memory is host memory
    int32_t n_threads = 1;
};

// Where a load says how far it has got: the host's EngineLoadProgressCallback, or nothing.
struct LoadProgress {
    EngineLoadProgressCallback callback = nullptr;
    void* user_data = nullptr;
    void operator()(float fraction, const char* phase) const {
        if (callback != nullptr) callback(user_data, fraction, phase);
    }
};

struct LoadSettings {
    std::string path;
    int32_t context_length = 0;  // per request; 0 = the model's trained length
    int32_t n_parallel = 0;      // requests decoded together; 0 = kDefaultParallel
    LoadProgress progress;
};

// One generation, owned by the thread waiting in Model::generate(). The decode loop reads the inputs and
// writes the outcome; `done` (under the model's mutex) hands the outcome back.
struct GenerationRequest {
    std::vector<llama_token> prompt;
    SamplingParams sampling;
    int32_t max_tokens = 0;  // 0 = until the context is full
    bool logprobs = false;
    bool ignore_eos = false;
    std::vector<std::string> stops;
    std::string json_schema;                                // empty = free text
    std::vector<std::pair<llama_token, float>> logit_bias;  // added to those logits before each draw
    std::unique_ptr<JsonConstraint> constraint;             // made from json_schema before the request is queued
    EngineTokenCallback on_token = nullptr;
    void* user_data = nullptr;

    EngineError error;
    int32_t finish_reason = ENGINE_FINISH_STOP;
    int32_t completion_tokens = 0;
    bool done = false;
    std::condition_variable done_cv;
};

// What a model is doing, as engine_model_get_stats reports it.
struct ModelStats {
    int32_t running = 0;    // requests in a slot
    int32_t waiting = 0;    // requests queued for a free slot
    uint64_t kv_used = 0;   // KV cells the requests in slots hold
    uint64_t kv_total = 0;  // KV cells of all slots
};

class Model {
public:
    static constexpr int32_t kDefaultParallel = 4;

    // Loads the model and starts its decode loop. With a non-zero `budget_bytes` the estimate is checked
    // before anything is allocated, and llama.cpp's own accounting once the model is loaded.
    static EngineError load(const LoadSettings& settings, const Runtime& runtime, uint64_t budget_bytes,
                            std::unique_ptr<Model>* out);
    // The memory load() would take, from the GGUF's metadata alone (README.md, "Memory").
    static EngineError estimate(const LoadSettings& settings, const Runtime& runtime, uint64_t* bytes);

    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    // [any thread] The prompt's tokens; fails with ERR_CONTEXT_OVERFLOW when they do not fit a request's context.
    // `keep_going` is asked now and then; when it says no, `cancelled` is set.
    EngineError tokenize(const char* text, int32_t len, bool add_special, bool parse_special,
                         const std::function<bool()>& keep_going, std::vector<llama_token>* tokens,
                         bool* cancelled) const;
    // [any thread] Queues the request for the decode loop and returns when it is done.
    void generate(GenerationRequest* request);
    // Fails what is queued or in flight with ERR_MODEL_NOT_LOADED and ends the decode loop.
    void stop();

    // [any thread, at once] Counters the decode loop publishes after each round; takes no lock decoding holds.
    ModelStats stats() const;

    // [any thread] Each input's embedding into consecutive rows of `out` (embedder.h).
    EngineError embed(const std::vector<std::vector<llama_token>>& inputs, float* out) {
        return embedder_->embed(inputs, out);
    }
    int32_t embedding_length() const { return embedder_->length(); }

    int32_t context_length() const { return n_ctx_request_; }
    const llama_vocab* vocab() const { return vocab_; }
    uint64_t memory_bytes() const { return memory_bytes_; }

private:
    struct Slot;  // slot.h

    Model(llama_model* model, llama_context* ctx, int32_t n_ctx_request, int32_t n_parallel);

    // The decode loop (scheduler.cpp).
    void run();
    bool step();
    // Waits for a request or a busy slot; takes as many queued requests as there are free slots. False when
    // the model is stopping.
    bool admit(std::vector<GenerationRequest*>* arrived);
    Slot& choose_slot(const GenerationRequest& request);
    void assign(Slot& slot, GenerationRequest* request);
    void add_to_batch(const Slot& slot, llama_token token, bool output);
    void add_generated_tokens();
    void add_prompt_chunks();
    void decode_and_sample();
    void take_token(Slot& slot, const float* logits_row);
    void publish_stats();
    void finish(Slot& slot, int32_t reason);
    void fail(Slot& slot, EngineError error);
    void fail_slots(const EngineError& error);
    // Fails every request in a slot or queued.
    void fail_all(const EngineError& error);

    llama_model* model_;
    llama_context* ctx_;
    std::unique_ptr<Embedder> embedder_;
    ggml_threadpool* threadpool_ = nullptr;
    const llama_vocab* vocab_;
    int32_t n_vocab_;
    PromptTokenizer tokenizer_;
    int32_t n_ctx_request_;
    uint64_t memory_bytes_ = 0;
    llama_batch batch_;
    int32_t batch_capacity_;
    std::vector<std::unique_ptr<Slot>> slots_;
    uint64_t clock_ = 0;  // orders slots by last use

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<GenerationRequest*> queue_;
    bool stopping_ = false;
    std::atomic<int32_t> queued_{0};    // queue_.size(), readable without mutex_
    std::atomic<int32_t> running_{0};   // published by the decode loop
    std::atomic<uint64_t> kv_used_{0};  // published by the decode loop
    std::thread loop_;
};
