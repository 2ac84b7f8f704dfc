// Tests of the plugin's own arithmetic and text handling, against straightforward references and llama.cpp
// itself: run by src/native.test.ts as `engine_native_tests <plugin folder> <llama.cpp source folder>`. The
// prompt tokenizer's are here; the sampler's and the token emitter's in files of their own.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../llama_library.h"
#include "../prompt_tokenizer.h"
#include "check.h"

namespace {

std::vector<llama_token> llama_cpp_tokens(const llama_vocab* vocab, const std::string& text, bool add_special,
                                          bool parse_special) {
    std::vector<llama_token> tokens(text.size() + 16);
    const int32_t n = lib.llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                                         static_cast<int32_t>(tokens.size()), add_special, parse_special);
    tokens.resize(static_cast<size_t>(n < 0 ? 0 : n));
    return tokens;
}

std::vector<llama_token> our_tokens(const PromptTokenizer& tokenizer, const std::string& text, bool add_special,
                                    bool parse_special) {
    std::vector<llama_token> tokens;
    bool cancelled = false;
    tokenizer.tokenize(
        text.data(), text.size(), add_special, parse_special, [] { return true; }, &tokens, &cancelled);
    return tokens;
}

// llama.cpp's own tokenizer test inputs (models/ggml-vocab-*.gguf.inp), one per separator.
std::vector<std::string> corpus(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    std::stringstream all;
    all << file.rdbuf();
    const std::string text = all.str();
    const std::string separator = "\n__ggml_vocab_test__\n";
    std::vector<std::string> inputs;
    for (size_t start = 0, end; start < text.size(); start = end + separator.size()) {
        end = text.find(separator, start);
        if (end == std::string::npos) {
            end = text.size();
        }
        inputs.push_back(text.substr(start, end - start));
    }
    return inputs;
}

void check_vocab(const std::string& source, const char* name, const std::vector<std::string>& extra) {
    llama_model_params params = lib.llama_model_default_params();
    params.vocab_only = true;
    const std::string path = source + "/models/ggml-vocab-" + name + ".gguf";
    llama_model* model = lib.llama_model_load_from_file(path.c_str(), params);
    CHECK_MSG(model != nullptr, std::string("cannot load ") + path);
    if (model == nullptr) {
        return;
    }
    const llama_vocab* vocab = lib.llama_model_get_vocab(model);
    const PromptTokenizer tokenizer(vocab);
    std::vector<std::string> prompts = corpus(path + ".inp");
    prompts.insert(prompts.end(), extra.begin(), extra.end());
    for (const std::string& prompt : prompts) {
        for (const bool add_special : {false, true}) {
            for (const bool parse_special : {false, true}) {
                CHECK_MSG(our_tokens(tokenizer, prompt, add_special, parse_special) ==
                              llama_cpp_tokens(vocab, prompt, add_special, parse_special),
                          std::string(name) + ": tokens differ from llama.cpp's for \"" + prompt.substr(0, 60) + "\"");
            }
        }
    }
    lib.llama_model_free(model);
}

void prompt_tokenizer_tests(const std::string& source) {
    // Llama 3 (BPE): special tokens mid-text, adjacent, at both ends, cut short, among whitespace.
    check_vocab(source, "llama-bpe",
                {"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n",
                 "<|eot_id|><|eot_id|>x<|eot_id|>", "  <|eot_id|>  x  ", "<|eot_id", "é<|eot_id|>€😀 ok"});
    // Llama 2 (SentencePiece: a space before text after a special token, BOS added), and BERT (CLS ... SEP).
    check_vocab(source, "llama-spm", {"<s> Hello </s> world", "</s></s>", "  <s>x  ", "é<s>€"});
    check_vocab(source, "bert-bge", {"[CLS] hello [SEP] world", "[MASK][MASK] x"});
}

void prompt_tokenizer_is_linear(const std::string& source) {
    llama_model_params params = lib.llama_model_default_params();
    params.vocab_only = true;
    llama_model* model = lib.llama_model_load_from_file((source + "/models/ggml-vocab-llama-bpe.gguf").c_str(), params);
    const llama_vocab* vocab = lib.llama_model_get_vocab(model);
    const PromptTokenizer tokenizer(vocab);
    std::string dense;
    for (int i = 0; i < 30000; ++i) {
        dense += "<|eot_id|>x";
    }
    const auto started = std::chrono::steady_clock::now();
    const std::vector<llama_token> tokens = our_tokens(tokenizer, dense, false, true);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    CHECK(tokens.size() == 60000);
    std::printf("30,000 '<|eot_id|>x': %zu tokens in %.1f ms\n", tokens.size(), ms);

    // Asked to stop, it stops.
    int asked = 0;
    bool cancelled = false;
    std::vector<llama_token> partial;
    tokenizer.tokenize(
        dense.data(), dense.size(), false, true, [&] { return ++asked < 3; }, &partial, &cancelled);
    CHECK(cancelled);
    CHECK(partial.size() < tokens.size());
    lib.llama_model_free(model);
}

}  // namespace

void sampler_tests();
void token_emitter_tests();

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: engine_native_tests <plugin folder> <llama.cpp source folder>\n");
        return 2;
    }
    if (EngineError error = open_llama_library(argv[1])) {
        std::fprintf(stderr, "%s\n", error.message.c_str());
        return 2;
    }
    lib.llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    RUN(prompt_tokenizer_tests(argv[2]));
    RUN(prompt_tokenizer_is_linear(argv[2]));
    RUN(sampler_tests());
    RUN(token_emitter_tests());
    return check_summary();
}
