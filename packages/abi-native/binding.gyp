{
  "targets": [
    {
      "target_name": "abi_native",
      "sources": ["native/binding.cc", "native/plugin.cc", "native/generation.cc", "native/library.cc", "native/sandbox.cc", "native/token_pipe.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "include"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      # Exceptions on: std::thread reports a thread it cannot start by throwing, and the binding catches that.
      "cflags_cc": ["-std=c++17", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "conditions": [
        ["OS=='linux'", {"libraries": ["-ldl"]}],
        ["OS=='mac'", {"xcode_settings": {"CLANG_CXX_LANGUAGE_STANDARD": "c++17", "MACOSX_DEPLOYMENT_TARGET": "11.0", "GCC_ENABLE_CPP_EXCEPTIONS": "YES"}}],
        ["OS=='win'", {"msvs_settings": {"VCCLCompilerTool": {"AdditionalOptions": ["/std:c++17"], "ExceptionHandling": 1}}}]
      ]
    }
  ]
}
