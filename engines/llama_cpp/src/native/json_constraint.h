// Holds a generation to a JSON Schema (EngineGenerateParams.json_schema): llama.cpp's own converter turns the
// schema into a GBNF grammar, as llama-server does, and llama.cpp's grammar sampler tells, before each token is
// drawn, which tokens can continue a document the schema accepts; the others cannot be drawn.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "llama.h"

class JsonConstraint {
public:
    // Fails with ERR_INVALID_ARGUMENT saying what the converter refused (a feature it does not support, JSON
    // that is not a schema).
    static EngineError create(const llama_vocab* vocab, const std::string& json_schema,
                              std::unique_ptr<JsonConstraint>* out);
    ~JsonConstraint();
    JsonConstraint(const JsonConstraint&) = delete;
    JsonConstraint& operator=(const JsonConstraint&) = delete;

    // Sets the logits of the tokens the grammar does not allow next to -infinity.
    void mask(float* logits, int32_t n_vocab);
    // Moves the grammar past the token drawn; fails (ERR_INTERNAL) when the grammar cannot take it, which a
    // token that mask() allowed never is.
    EngineError accept(llama_token token);

private:
    explicit JsonConstraint(llama_sampler* grammar) : grammar_(grammar) {}

    llama_sampler* grammar_;
    std::vector<llama_token_data> candidates_;
};
