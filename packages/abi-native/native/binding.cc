// The native half of @llm-node/abi-native: the classes src/engine.ts drives. Arguments arrive validated
// and normalised by the TypeScript layer, which is also where errors become EngineError.
#include <napi.h>

#include "engine_api.h"
#include "generation.h"
#include "plugin.h"
#include "sandbox.h"
#include "token_pipe.h"

// denyNetwork() -> { enforced, how }
static Napi::Value DenyNetworkJs(const Napi::CallbackInfo& info) {
    SandboxResult result = DenyNetwork();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("enforced", result.enforced);
    out.Set("how", result.how);
    return out;
}

// progress() -> how many times plugins have called a token callback in this process, tokens or not: the
// engine host's sign of life while generating.
static Napi::Value ProgressJs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(Generation::Progress()));
}

// openTokenPipe(fd): generations started with a pipe generation id write their frames to `fd`.
static Napi::Value OpenTokenPipeJs(const Napi::CallbackInfo& info) {
    TokenPipe::Open(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
}

// engine_api.h's constants, so that TypeScript never copies them by hand.
static Napi::Object Constants(Napi::Env env) {
    Napi::Object constants = Napi::Object::New(env);
    constants.Set("ENGINE_ABI_VERSION", ENGINE_ABI_VERSION);
    constants.Set("ENGINE_FLAG_THREAD_SAFE", ENGINE_FLAG_THREAD_SAFE);
    constants.Set("ENGINE_FLAG_JSON_SCHEMA", ENGINE_FLAG_JSON_SCHEMA);
    constants.Set("ENGINE_FLAG_LOGIT_BIAS", ENGINE_FLAG_LOGIT_BIAS);
    constants.Set("ENGINE_GENERATE_LOGPROBS", ENGINE_GENERATE_LOGPROBS);
    constants.Set("ENGINE_GENERATE_IGNORE_EOS", ENGINE_GENERATE_IGNORE_EOS);
    constants.Set("ENGINE_GENERATE_ADD_SPECIAL", ENGINE_GENERATE_ADD_SPECIAL);
    constants.Set("ENGINE_GENERATE_PARSE_SPECIAL", ENGINE_GENERATE_PARSE_SPECIAL);
    constants.Set("DENIED_SOCKET_MARKER", kDeniedSocketMarker);
    return constants;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("ENGINE_ABI_VERSION", Napi::Number::New(env, ENGINE_ABI_VERSION));
    exports.Set("constants", Constants(env));
    exports.Set("denyNetwork", Napi::Function::New(env, DenyNetworkJs, "denyNetwork"));
    exports.Set("progress", Napi::Function::New(env, ProgressJs, "progress"));
    exports.Set("openTokenPipe", Napi::Function::New(env, OpenTokenPipeJs, "openTokenPipe"));
    exports.Set("Plugin", Plugin::Define(env));
    exports.Set("Generation", Generation::Define(env));
    return exports;
}

NODE_API_MODULE(abi_native, Init)
