// The plugin's tokenizer against reference tokenizations: onnx_native_tests <tokenizer.json> <inputs> <expected>,
// where <inputs> holds texts separated by lines "__ggml_vocab_test__" and <expected> one line of token ids per
// text (llama.cpp's tokenizer test corpora). Prints each mismatch; exits 1 if there was one.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "model_folder.h"
#include "tokenizer.h"

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: onnx_native_tests <tokenizer.json> <inputs> <expected>\n");
        return 2;
    }
    const Tokenizer tokenizer(read_json_file(argv[1]));
    const std::string inputs = read_file(argv[2]);
    std::istringstream expected(read_file(argv[3]));

    const std::string separator = "\n__ggml_vocab_test__\n";
    size_t start = 0;
    int checked = 0;
    int failed = 0;
    while (start < inputs.size()) {
        size_t end = inputs.find(separator, start);
        if (end == std::string::npos) {
            end = inputs.size();
        }
        const std::string text = inputs.substr(start, end - start);
        start = end + separator.size();

        std::string line;
        std::getline(expected, line);
        std::vector<int32_t> want;
        std::istringstream ids(line);
        for (int32_t id; ids >> id;) {
            want.push_back(id);
        }
        const std::vector<int32_t> got = tokenizer.encode(text, false, false);
        ++checked;
        if (got != want) {
            ++failed;
            std::printf("MISMATCH for \"%s\":\n  want", text.c_str());
            for (int32_t id : want) std::printf(" %d", id);
            std::printf("\n  got ");
            for (int32_t id : got) std::printf(" %d", id);
            std::printf("\n");
        }
    }
    std::printf("%d texts, %d mismatched\n", checked, failed);
    return failed == 0 && checked > 0 ? 0 : 1;
}
