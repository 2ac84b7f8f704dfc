#include "json_constraint.h"

#include <cmath>
#include <exception>

#include "json-schema-to-grammar.h"
#include "llama_library.h"
#include "schema_warnings.h"

EngineError JsonConstraint::create(const llama_vocab* vocab, const std::string& json_schema,
                                   std::unique_ptr<JsonConstraint>* out) {
    std::string grammar;
    take_schema_warnings();
    try {
        grammar = json_schema_to_grammar(common_json::parse(json_schema));
    } catch (const std::exception& error) {
        return engine_error(ERR_INVALID_ARGUMENT,
                            std::string("cannot hold the output to this JSON Schema: ") + error.what());
    }
    // What it would only half enforce (an unsupported regex accepted as any string) is refused: the output
    // must match the whole schema.
    std::string incomplete = take_schema_warnings();
    if (!incomplete.empty()) {
        const std::string said = "JSON schema conversion was incomplete: ";
        const size_t at = incomplete.find(said);
        incomplete = incomplete.substr(at == std::string::npos ? 0 : at + said.size());
        const size_t tail = incomplete.find(", accepting any string");
        if (tail != std::string::npos) incomplete.erase(tail, std::string(", accepting any string").size());
        while (!incomplete.empty() && incomplete.back() == '\n') incomplete.pop_back();
        return engine_error(ERR_INVALID_ARGUMENT, "cannot hold the output to this JSON Schema: " + incomplete);
    }
    LogCapture log;
    llama_sampler* sampler = lib.llama_sampler_init_grammar(vocab, grammar.c_str(), "root");
    if (sampler == nullptr) {
        return engine_error(ERR_INVALID_ARGUMENT,
                            "llama.cpp refused the grammar made from the JSON Schema: " + log.text());
    }
    out->reset(new JsonConstraint(sampler));
    return {};
}

JsonConstraint::~JsonConstraint() {
    lib.llama_sampler_free(grammar_);
}

void JsonConstraint::mask(float* logits, int32_t n_vocab) {
    candidates_.resize(static_cast<size_t>(n_vocab));
    for (int32_t id = 0; id < n_vocab; ++id) {
        candidates_[id] = {id, logits[id], 0.0f};
    }
    llama_token_data_array array{candidates_.data(), candidates_.size(), -1, false};
    lib.llama_sampler_apply(grammar_, &array);  // marks the tokens it refuses, in place and in order
    for (int32_t id = 0; id < n_vocab; ++id) {
        if (std::isinf(candidates_[id].logit) && candidates_[id].logit < 0) {
            logits[id] = -INFINITY;
        }
    }
}

EngineError JsonConstraint::accept(llama_token token) {
    try {
        lib.llama_sampler_accept(grammar_, token);
    } catch (const std::exception& error) {
        return engine_error(ERR_INTERNAL,
                            std::string("the JSON Schema's grammar cannot take the token drawn: ") + error.what());
    }
    return {};
}
