#include "generation.h"

#include <algorithm>
#include <cstdio>
#include <system_error>
#include <utility>

#include "token_pipe.h"
#include "utf8.h"

Generation::Event Generation::tokens_event_ = Generation::Event::kTokens;
Generation::Event Generation::end_event_ = Generation::Event::kEnd;
std::atomic<uint64_t> Generation::progress_{0};

Napi::Function Generation::Define(Napi::Env env) {
    return DefineClass(env, "Generation", {InstanceMethod<&Generation::Cancel>("cancel")});
}

// new Generation(plugin, request, onEvent[, pipeGeneration]). `request` is what src/engine.ts normalised:
// { modelId: string | null, prompt, maxTokens, temperature, topP, topK, minP, presencePenalty,
//   frequencyPenalty, seed: number | null, stop: string[], jsonSchema: string | null,
//   logitBiasTokens: number[], logitBiasValues: number[], flags }. With `pipeGeneration` (in an engine host,
// once openTokenPipe() was called) the tokens and the end go to the token pipe as frames of that generation,
// and onEvent receives only the end.
Generation::Generation(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Generation>(info) {
    Napi::Env env = info.Env();
    core_ = Plugin::Unwrap(info[0].As<Napi::Object>())->core();
    if (core_->closed) {
        ThrowHostError(env, "closed", "the engine is closed");
        return;
    }
    Napi::Object request = info[1].As<Napi::Object>();
    auto number = [&](const char* key) { return request.Get(key).As<Napi::Number>(); };

    bool has_model_id = request.Get("modelId").IsString();
    if (has_model_id) model_id_ = request.Get("modelId").As<Napi::String>();
    prompt_ = request.Get("prompt").As<Napi::String>();
    Napi::Array stop = request.Get("stop").As<Napi::Array>();
    for (uint32_t i = 0; i < stop.Length(); ++i) stop_.push_back(stop.Get(i).As<Napi::String>());
    for (const std::string& s : stop_) stop_pointers_.push_back(s.c_str());
    const bool has_json_schema = request.Get("jsonSchema").IsString();
    if (has_json_schema) json_schema_ = request.Get("jsonSchema").As<Napi::String>();
    Napi::Array bias_tokens = request.Get("logitBiasTokens").As<Napi::Array>();
    Napi::Array bias_values = request.Get("logitBiasValues").As<Napi::Array>();
    for (uint32_t i = 0; i < bias_tokens.Length(); ++i) {
        bias_tokens_.push_back(bias_tokens.Get(i).As<Napi::Number>().Int32Value());
        bias_values_.push_back(bias_values.Get(i).As<Napi::Number>().FloatValue());
    }

    params_.struct_size = sizeof(params_);
    params_.flags = number("flags").Uint32Value();
    params_.model_id = has_model_id ? model_id_.c_str() : nullptr;
    params_.prompt = prompt_.data();
    params_.prompt_len = static_cast<int32_t>(prompt_.size());
    params_.max_tokens = number("maxTokens").Int32Value();
    params_.temperature = number("temperature").FloatValue();
    params_.top_p = number("topP").FloatValue();
    params_.top_k = number("topK").Int32Value();
    params_.min_p = number("minP").FloatValue();
    params_.presence_penalty = number("presencePenalty").FloatValue();
    params_.frequency_penalty = number("frequencyPenalty").FloatValue();
    Napi::Value seed = request.Get("seed");
    params_.seed = seed.IsNumber() ? static_cast<uint64_t>(seed.As<Napi::Number>().DoubleValue()) : ENGINE_SEED_RANDOM;
    params_.stop = stop_pointers_.empty() ? nullptr : stop_pointers_.data();
    params_.n_stop = static_cast<int32_t>(stop_pointers_.size());
    params_.json_schema = has_json_schema ? json_schema_.c_str() : nullptr;
    params_.logit_bias_tokens = bias_tokens_.empty() ? nullptr : bias_tokens_.data();
    params_.logit_bias_values = bias_values_.empty() ? nullptr : bias_values_.data();
    params_.n_logit_bias = static_cast<int32_t>(bias_tokens_.size());
    logprobs_ = (params_.flags & ENGINE_GENERATE_LOGPROBS) != 0;

    if (info.Length() > 3 && info[3].IsNumber() && TokenPipe::Get() != nullptr) {
        pipe_ = TokenPipe::Get();
        pipe_generation_ = info[3].As<Napi::Number>().Uint32Value();
    }
    tsfn_ = Tsfn::New(env, info[2].As<Napi::Function>(), "llm-node:generation", 0, 1, this);
    Ref();  // released in DeliverEnd: the thread and the deliveries use `this` until then
    core_->in_flight++;
    try {
        thread_ = std::thread(&Generation::Run, this);
    } catch (const std::system_error& error) {  // no thread to be had: undo, and tell JS
        core_->in_flight--;
        tsfn_.Release();
        Unref();
        ThrowHostError(env, "internal", std::string("cannot start a thread for the generation: ") + error.what());
    }
}

Napi::Value Generation::Cancel(const Napi::CallbackInfo& info) {
    cancelled_ = true;
    return info.Env().Undefined();
}

// ---- The generation's thread ----------------------------------------------------------------------

void Generation::Run() {
    bool stream = core_->fn.generate_stream != nullptr;
    {
        // The legacy engine_generate must run alone; streaming follows the plugin's thread-safety.
        PluginCall call(*core_, stream ? PluginCall::kConcurrent : PluginCall::kAlone);
        if (cancelled_) {
            stopped_ = true;  // cancelled while waiting for the plugin: it never sees this request
        } else if (stream) {
            RunStream();
        } else {
            RunLegacy();
        }
    }
    tsfn_.NonBlockingCall(&end_event_);
    tsfn_.Release();
}

void Generation::RunStream() {
    outcome_.call = "engine_generate_stream";
    result_.struct_size = sizeof(result_);
    int32_t rc = core_->fn.generate_stream(&params_, &Generation::OnToken, this, &result_);
    std::lock_guard<std::mutex> lock(mutex_);
    if (rc != ERR_OK && !outcome_.garbage) outcome_.Failed(*core_, rc);
}

// A plugin without engine_generate_stream: the whole completion arrives at once and becomes one batch.
void Generation::RunLegacy() {
    outcome_.call = "engine_generate";
    TokenResult* results = nullptr;
    int32_t rc = core_->fn.generate(prompt_.c_str(), &results);
    if (rc != ERR_OK) {
        outcome_.Failed(*core_, rc);
        return;
    }
    result_.finish_reason = ENGINE_FINISH_STOP;
    if (results == nullptr) return;  // "no tokens"
    // The array is valid until the next call into the plugin, and we still hold the plugin: copy it now. In this
    // process all of it is appended before JS is woken, so that JS gets it as one chunk however busy the CPU.
    for (const TokenResult* token = results; token->text != nullptr; ++token) {
        if (cancelled_) {
            stopped_ = true;
            break;
        }
        if (!Valid(*token)) break;
        if (pipe_ != nullptr) {
            Emit(*token);
        } else {
            std::lock_guard<std::mutex> lock(mutex_);
            AppendLocked(*token);
        }
        ++result_.completion_tokens;
    }
    if (pipe_ == nullptr && result_.completion_tokens > 0) WakeJs();
}

// The per-token path: a relaxed load, a mutex, an append, and a wake-up of JS only if none is pending.
int32_t Generation::OnToken(void* user_data, const TokenResult* token) noexcept {
    auto* self = static_cast<Generation*>(user_data);
    progress_.fetch_add(1, std::memory_order_relaxed);
    if (self->cancelled_.load(std::memory_order_relaxed)) {
        self->stopped_ = true;
        return 1;
    }
    if (token == nullptr) return 0;  // the plugin only asked whether to go on
    if (!self->Valid(*token)) {
        self->stopped_ = true;
        return 1;
    }
    self->Emit(*token);
    return 0;
}

// To the token pipe as a frame of its own, or to JS: appended, with a wake-up of JS only if none is pending.
void Generation::Emit(const TokenResult& token) {
    if (pipe_ != nullptr) {
        pipe_->SendToken(pipe_generation_, !piped_a_token_, token.token_id, token.logprob, token.text,
                         static_cast<size_t>(token.text_len));
        piped_a_token_ = true;
        return;
    }
    bool schedule;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        AppendLocked(token);
        schedule = !delivery_scheduled_;  // one lock for both: this runs per token
        delivery_scheduled_ = true;
    }
    if (schedule) tsfn_.NonBlockingCall(&tokens_event_);
}

// Schedules a delivery of the tokens appended so far, unless one is already pending (Emit does the same inline).
void Generation::WakeJs() {
    bool schedule;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        schedule = !delivery_scheduled_;
        delivery_scheduled_ = true;
    }
    if (schedule) tsfn_.NonBlockingCall(&tokens_event_);
}

// A token the ABI does not allow ends the generation with plugin_error instead of reaching JS.
bool Generation::Valid(const TokenResult& token) {
    std::string finding;
    if (token.text_len < 0) {
        finding = "a token with text_len " + std::to_string(token.text_len);
    } else if (token.text == nullptr && token.text_len > 0) {
        finding = "a token with NULL text and text_len " + std::to_string(token.text_len);
    } else {
        return true;
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);  // read on the generation's thread, after the plugin returned
        outcome_.Garbage(std::string(outcome_.call) + " produced " + finding);
    }
    cancelled_ = true;
    return false;
}

void Generation::AppendLocked(const TokenResult& token) {
    if (token.text_len > 0) pending_text_.append(token.text, static_cast<size_t>(token.text_len));
    pending_ends_.push_back(pending_text_.size());
    if (logprobs_) pending_details_.push_back({token.token_id, token.logprob});
}

// ---- The JS thread --------------------------------------------------------------------------------

void Generation::CallJs(Napi::Env env, Napi::Function on_event, Generation* self, Event* event) {
    if (*event == Event::kEnd) {
        self->DeliverEnd(env, on_event);
    } else if (env != nullptr) {  // nullptr: the environment is going away; only the end still matters
        self->DeliverTokens(env, on_event, false);
    }
}

// Hands JS every token made since the last delivery: one string, built once, and where each token's
// characters end in it. A character belongs to the token whose bytes complete it, so tokens at the end
// of a batch that stop inside a character wait for the next batch; in the last one the decoder turns
// what is left unfinished into U+FFFD.
void Generation::DeliverTokens(Napi::Env env, Napi::Function on_event, bool last) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        size_t base = taken_text_.size();
        taken_text_.append(pending_text_);
        for (size_t end : pending_ends_) taken_ends_.push_back(base + end);
        taken_details_.insert(taken_details_.end(), pending_details_.begin(), pending_details_.end());
        pending_text_.clear();
        pending_ends_.clear();
        pending_details_.clear();
        delivery_scheduled_ = false;
    }
    if (cancelled_) {  // nothing reaches JS after a cancel
        ForgetTaken(taken_ends_.size(), taken_text_.size());
        return;
    }
    size_t count = 0;  // tokens delivered now
    size_t bytes = 0;  // their bytes
    napi_value text;
    piece_ends_.clear();
    bool ascii = std::all_of(taken_text_.begin(), taken_text_.end(), [](char c) { return (c & 0x80) == 0; });
    if (ascii) {  // the common case: offsets are byte offsets, and V8 copies the bytes as they are
        count = taken_ends_.size();
        bytes = taken_text_.size();
        for (size_t end : taken_ends_) piece_ends_.push_back(static_cast<uint32_t>(end));
        napi_create_string_latin1(env, taken_text_.data(), bytes, &text);
    } else {
        Utf8Decoder decoder;
        text16_.clear();
        size_t units = 0;
        for (size_t i = 0, start = 0; i < taken_ends_.size(); start = taken_ends_[i], ++i) {
            decoder.Decode(taken_text_.data() + start, taken_ends_[i] - start, text16_);
            if (last && i + 1 == taken_ends_.size()) decoder.Finish(text16_);
            piece_ends_.push_back(static_cast<uint32_t>(text16_.size()));
            if (decoder.AtBoundary()) {
                count = i + 1;
                bytes = taken_ends_[i];
                units = text16_.size();
            }
        }
        napi_create_string_utf16(env, text16_.data(), units, &text);
    }
    if (count == 0) return;
    Napi::Uint32Array ends = Napi::Uint32Array::New(env, count);
    std::copy(piece_ends_.begin(), piece_ends_.begin() + count, ends.Data());
    Napi::Value tokens = logprobs_ ? TokenDetails(env, count) : env.Undefined();
    ForgetTaken(count, bytes);
    on_event.Call({Napi::Value(env, text), ends, tokens});
    if (env.IsExceptionPending()) {
        // A consumer's exception: stop generating and report it once, as the generation's error.
        napi_value thrown;
        napi_get_and_clear_last_exception(env, &thrown);  // any value: JS may throw a string
        thrown_ = Napi::Reference<Napi::Value>::New(Napi::Value(env, thrown), 1);
        cancelled_ = true;
    }
}

// [{ id, text, bytes, logprob }] for the first `count` taken tokens; built only when logprobs were asked.
Napi::Value Generation::TokenDetails(Napi::Env env, size_t count) const {
    Napi::Array array = Napi::Array::New(env, count);
    for (size_t i = 0, start = 0; i < count; start = taken_ends_[i], ++i) {
        const char* piece = taken_text_.data() + start;
        size_t length = taken_ends_[i] - start;
        Napi::Array bytes = Napi::Array::New(env, length);
        for (size_t b = 0; b < length; ++b) bytes.Set(static_cast<uint32_t>(b), static_cast<unsigned char>(piece[b]));
        Napi::Object token = Napi::Object::New(env);
        token.Set("id", taken_details_[i].id);
        token.Set("text", Napi::String::New(env, piece, length));  // on its own: V8 replaces a split character
        token.Set("bytes", bytes);
        token.Set("logprob", taken_details_[i].logprob);
        array.Set(static_cast<uint32_t>(i), token);
    }
    return array;
}

// Drops the first `count` taken tokens, whose text is the first `bytes` bytes.
void Generation::ForgetTaken(size_t count, size_t bytes) {
    taken_text_.erase(0, bytes);
    taken_ends_.erase(taken_ends_.begin(), taken_ends_.begin() + count);
    for (size_t& end : taken_ends_) end -= bytes;
    if (logprobs_) taken_details_.erase(taken_details_.begin(), taken_details_.begin() + count);
}

void Generation::DeliverEnd(Napi::Env env, Napi::Function on_event) {
    thread_.join();  // it has nothing left to do but release the thread-safe function
    core_->in_flight--;
    // Every token frame is written by now: the end frame comes after them.
    if (pipe_ != nullptr) pipe_->SendEnd(pipe_generation_, EndJson());
    if (env == nullptr) return;
    DeliverTokens(env, on_event, true);
    Napi::Object end = Napi::Object::New(env);
    end.Set("stopped", stopped_.load());
    if (!thrown_.IsEmpty()) {
        end.Set("thrown", thrown_.Value());
    } else if (!outcome_.ok()) {
        end.Set("error", outcome_.ToError(env));
    } else {
        end.Set("finishReason", result_.finish_reason);
        end.Set("promptTokens", result_.prompt_tokens);
        end.Set("completionTokens", result_.completion_tokens);
    }
    on_event.Call({env.Undefined(), env.Undefined(), env.Undefined(), end});
    Unref();
}

namespace {

// `text` as a JSON string. Bytes that are not UTF-8 pass through; the reader decodes them to U+FFFD.
std::string JsonString(const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out + "\"";
}

}  // namespace

// The end event of DeliverEnd as JSON, for the token pipe's end frame (src/generation.ts reads both alike).
std::string Generation::EndJson() const {
    std::string json = std::string("{\"stopped\":") + (stopped_.load() ? "true" : "false");
    if (!outcome_.ok()) {
        json += ",\"error\":{\"call\":" + JsonString(outcome_.call);
        json += outcome_.garbage ? ",\"code\":\"plugin_error\"" : ",\"engineCode\":" + std::to_string(outcome_.rc);
        json += ",\"message\":" + JsonString(outcome_.message) + "}";
    } else {
        json += ",\"finishReason\":" + std::to_string(result_.finish_reason);
        json += ",\"promptTokens\":" + std::to_string(result_.prompt_tokens);
        json += ",\"completionTokens\":" + std::to_string(result_.completion_tokens);
    }
    return json + "}";
}
