// The split of text into words before byte-level BPE, as Llama 3's tokenizer.json defines it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

// The regular expression of Llama 3's pre-tokenizer (a Split of tokenizer.json), which split_llama3 implements.
extern const char* const k_llama3_split_pattern;

// The words of `text`, in order, together making all of it.
std::vector<std::string_view> split_llama3(std::string_view text);
