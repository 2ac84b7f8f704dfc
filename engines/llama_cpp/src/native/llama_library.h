// llama.cpp's C API as this plugin calls it, resolved at run time from the runtime libraries in the plugin's
// folder. The plugin links against nothing of llama.cpp: the boundary is the C functions listed here (llama.h,
// ggml.h, ggml-backend.h, gguf.h), no C++ types cross it, Windows needs no import libraries, and a library that
// does not load is reported by file name with the loader's reason.
#pragma once

#include <string>

#include "errors.h"
#include "ggml-backend.h"
#include "gguf.h"
#include "llama.h"

#define LLAMA_LIBRARY_FUNCTIONS(X)     \
  X(ggml_backend_dev_backend_reg)      \
  X(ggml_backend_dev_by_type)          \
  X(ggml_backend_dev_count)            \
  X(ggml_backend_dev_description)      \
  X(ggml_backend_dev_get)              \
  X(ggml_backend_dev_memory)           \
  X(ggml_backend_dev_type)             \
  X(ggml_backend_load)                 \
  X(ggml_backend_load_all_from_path)   \
  X(ggml_backend_reg_get_proc_address) \
  X(ggml_blck_size)                    \
  X(ggml_threadpool_params_default)    \
  X(ggml_type_size)                    \
  X(llama_attach_threadpool)           \
  X(llama_backend_free)                \
  X(llama_backend_init)                \
  X(llama_batch_free)                  \
  X(llama_batch_get_one)               \
  X(llama_batch_init)                  \
  X(llama_context_default_params)      \
  X(llama_decode)                      \
  X(llama_free)                        \
  X(llama_get_embeddings_seq)          \
  X(llama_get_logits_ith)              \
  X(llama_get_memory)                  \
  X(llama_init_from_model)             \
  X(llama_log_set)                     \
  X(llama_max_parallel_sequences)      \
  X(llama_memory_clear)                \
  X(llama_memory_seq_rm)               \
  X(llama_model_default_params)        \
  X(llama_model_free)                  \
  X(llama_model_get_vocab)             \
  X(llama_model_load_from_file)        \
  X(llama_model_n_ctx_train)           \
  X(llama_model_n_embd_out)            \
  X(llama_model_size)                  \
  X(llama_n_batch)                     \
  X(llama_n_ctx_seq)                   \
  X(llama_pooling_type)                \
  X(llama_sampler_accept)              \
  X(llama_sampler_apply)               \
  X(llama_sampler_free)                \
  X(llama_sampler_init_grammar)        \
  X(llama_token_to_piece)              \
  X(llama_tokenize)                    \
  X(llama_vocab_bos)                   \
  X(llama_vocab_get_attr)              \
  X(llama_vocab_get_text)              \
  X(llama_vocab_is_eog)                \
  X(llama_vocab_n_tokens)

// One pointer per function, named as the function.
struct LlamaLibrary {
#define LLAMA_LIBRARY_POINTER(name) decltype(&::name) name = nullptr;
    LLAMA_LIBRARY_FUNCTIONS(LLAMA_LIBRARY_POINTER)
#undef LLAMA_LIBRARY_POINTER
};

// The functions, valid once open_llama_library() has succeeded. The libraries stay open for the life of the
// process: ggml keeps its backends registered until then.
extern LlamaLibrary lib;

// Opens the runtime libraries this plugin was built with (llama, ggml, ggml-base; runtime_libraries.h) from
// `plugin_dir` and resolves every function above. Idempotent.
EngineError open_llama_library(const std::string& plugin_dir);
