/*
 * The echo engine alone, without the host: engine_generate_stream with a callback that only counts,
 * timed in wall and CPU time. tokens.mjs subtracts this from what delivery through the host costs.
 * Usage: engine_only <libecho.so> <model file> <tokens>   → prints one JSON line.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine_api.h"

static int32_t count_token(void* user_data, const TokenResult* token) {
    (void)token;
    (*(long*)user_data)++;
    return 0;
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s <plugin> <model file> <tokens>\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    engine_init_fn init = (engine_init_fn)dlsym(lib, "engine_init");
    engine_model_load_fn model_load = (engine_model_load_fn)dlsym(lib, "engine_model_load");
    engine_generate_stream_fn generate = (engine_generate_stream_fn)dlsym(lib, "engine_generate_stream");
    EngineConfig config = {.struct_size = sizeof config, .gpu_backend = "cpu", .plugin_dir = "."};
    EngineModelLoadParams load = {
        .struct_size = sizeof load, .context_length = 2147483647, .model_path = argv[2], .format = "gguf"};
    EngineModelInfo info = {.struct_size = sizeof info};
    if (init(&config) != ERR_OK || model_load("m", &load, &info) != ERR_OK) return 1;

    EngineGenerateParams params = {.struct_size = sizeof params,
                                   .flags = ENGINE_GENERATE_IGNORE_EOS,
                                   .model_id = "m",
                                   .prompt = "go",
                                   .prompt_len = 2,
                                   .max_tokens = atoi(argv[3]),
                                   .seed = ENGINE_SEED_RANDOM};
    EngineGenerateResult result = {.struct_size = sizeof result};
    long tokens = 0;
    double wall = seconds(CLOCK_MONOTONIC), cpu = seconds(CLOCK_PROCESS_CPUTIME_ID);
    if (generate(&params, count_token, &tokens, &result) != ERR_OK) return 1;
    wall = seconds(CLOCK_MONOTONIC) - wall;
    cpu = seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu;
    printf("{\"tokens\":%ld,\"wallSeconds\":%.6f,\"cpuSeconds\":%.6f}\n", tokens, wall, cpu);
    return 0;
}
