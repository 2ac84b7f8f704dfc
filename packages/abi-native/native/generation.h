// One generation: runs on a thread of its own and streams tokens to JS in batches.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine_api.h"
#include "plugin.h"
#include "token_pipe.h"

// The JS class `Generation`: `new Generation(plugin, request, onEvent)` starts generating at once;
// `cancel()` stops it before the next token. onEvent(text, pieceEnds, tokens) receives every batch of
// tokens, and onEvent(undefined, undefined, undefined, end) the outcome, once, last.
class Generation : public Napi::ObjectWrap<Generation> {
public:
    static Napi::Function Define(Napi::Env env);
    explicit Generation(const Napi::CallbackInfo& info);
    // Token callbacks made by plugins in this process so far, polls included.
    static uint64_t Progress() { return progress_.load(std::memory_order_relaxed); }

private:
    enum class Event { kTokens, kEnd };
    static void CallJs(Napi::Env env, Napi::Function on_event, Generation* self, Event* event);
    using Tsfn = Napi::TypedThreadSafeFunction<Generation, Event, CallJs>;
    static Event tokens_event_;
    static Event end_event_;
    static std::atomic<uint64_t> progress_;

    // What a token carries besides its text, kept only when the request asked for logprobs.
    struct TokenDetail {
        int32_t id;
        float logprob;
    };

    Napi::Value Cancel(const Napi::CallbackInfo& info);

    // On the generation's thread (OnToken: on whichever thread the plugin calls it from).
    void Run();
    void RunStream();
    void RunLegacy();
    // noexcept: it is called from C; an exception would have nowhere to go.
    static int32_t OnToken(void* user_data, const TokenResult* token) noexcept;
    bool Valid(const TokenResult& token);
    void Emit(const TokenResult& token);
    void WakeJs();
    void AppendLocked(const TokenResult& token);
    std::string EndJson() const;

    // On the JS thread.
    void DeliverTokens(Napi::Env env, Napi::Function on_event, bool last);
    void DeliverEnd(Napi::Env env, Napi::Function on_event);
    Napi::Value TokenDetails(Napi::Env env, size_t count) const;
    void ForgetTaken(size_t count, size_t bytes);

    std::shared_ptr<PluginCore> core_;

    // The request, owned here because the plugin reads it until engine_generate_stream returns.
    std::string model_id_;
    std::string prompt_;
    std::vector<std::string> stop_;
    std::vector<const char*> stop_pointers_;
    std::string json_schema_;  // empty and unused unless the request has one
    std::vector<int32_t> bias_tokens_;
    std::vector<float> bias_values_;
    EngineGenerateParams params_{};
    bool logprobs_ = false;

    // Set by cancel(), or when the plugin sent garbage; the next token is refused.
    std::atomic<bool> cancelled_{false};
    // The host stopped the generation: a token was refused, or it never reached the plugin.
    std::atomic<bool> stopped_{false};

    // Tokens the plugin produced that JS has not taken yet. The token callback appends and schedules a
    // delivery only when none is scheduled, so one delivery carries every token made since the last one.
    std::mutex mutex_;
    std::string pending_text_;
    std::vector<size_t> pending_ends_;  // where each token's bytes end in pending_text_
    std::vector<TokenDetail> pending_details_;
    bool delivery_scheduled_ = false;

    // Written by the generation's thread; read on the JS thread after joining it.
    CallOutcome outcome_;
    EngineGenerateResult result_{};

    // JS thread only. Tokens taken from the pending ones but not delivered yet: those at the end of a
    // batch whose bytes stop inside a character wait for the token that completes it.
    std::string taken_text_;
    std::vector<size_t> taken_ends_;
    std::vector<TokenDetail> taken_details_;
    std::u16string text16_;                // scratch: the batch's text
    std::vector<uint32_t> piece_ends_;     // scratch: where each token's characters end in it
    Napi::Reference<Napi::Value> thrown_;  // what onEvent threw, reported in the end event

    // Set in an engine host: tokens and the end go to the token pipe as frames of this generation.
    TokenPipe* pipe_ = nullptr;
    uint32_t pipe_generation_ = 0;
    bool piped_a_token_ = false;  // the plugin's token thread only

    Tsfn tsfn_;
    std::thread thread_;
};
