// The native half of @llm-node/abi-native: the classes src/engine.ts drives. Arguments arrive validated
// and normalised by the TypeScript layer, which is also where errors become EngineError.
#include <napi.h>

#include "engine_api.h"
#include "generation.h"
#include "plugin.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ENGINE_ABI_VERSION", Napi::Number::New(env, ENGINE_ABI_VERSION));
  exports.Set("Plugin", Plugin::Define(env));
  exports.Set("Generation", Generation::Define(env));
  return exports;
}

NODE_API_MODULE(abi_native, Init)
