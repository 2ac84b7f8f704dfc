#include "library.h"

#ifdef _WIN32
#  include <windows.h>

namespace {

std::wstring Widen(const std::string& utf8) {
    int n = MultiByteToWideChar(CP_UTF8, 0, utf8.data(), static_cast<int>(utf8.size()), nullptr, 0);
    std::wstring wide(static_cast<size_t>(n), L'\0');
    MultiByteToWideChar(CP_UTF8, 0, utf8.data(), static_cast<int>(utf8.size()), wide.data(), n);
    return wide;
}

std::string SystemMessage(DWORD code) {
    wchar_t* text = nullptr;
    DWORD n =
        FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                       nullptr, code, 0, reinterpret_cast<wchar_t*>(&text), 0, nullptr);
    std::string utf8 = "Windows error " + std::to_string(code);
    if (n > 0) {
        int len = WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(n), nullptr, 0, nullptr, nullptr);
        utf8.assign(static_cast<size_t>(len), '\0');
        WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(n), utf8.data(), len, nullptr, nullptr);
        while (!utf8.empty() && (utf8.back() == '\n' || utf8.back() == '\r' || utf8.back() == ' ')) utf8.pop_back();
    }
    LocalFree(text);
    return utf8;
}

}  // namespace

bool SharedLibrary::Open(const std::string& path, std::string& error) {
    // DLL_LOAD_DIR: a plugin's runtime DLLs (ggml.dll, cudart…) sit beside it and must be found there.
    HMODULE module = LoadLibraryExW(Widen(path).c_str(), nullptr,
                                    LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS);
    if (module == nullptr) {
        error = SystemMessage(GetLastError());
        return false;
    }
    handle_ = module;
    return true;
}

void* SharedLibrary::Symbol(const char* name) const {
    return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(handle_), name));
}

void SharedLibrary::Close() {
    if (handle_ != nullptr) FreeLibrary(static_cast<HMODULE>(handle_));
    handle_ = nullptr;
}

#else
#  include <dlfcn.h>

bool SharedLibrary::Open(const std::string& path, std::string& error) {
    // RTLD_NOW: an unresolved symbol fails here, not in the middle of a request. RTLD_LOCAL: two plugins
    // that bundle different builds of the same runtime (ggml, say) do not see each other's symbols.
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
        const char* reason = dlerror();
        error = reason != nullptr ? reason : "dlopen failed";
        return false;
    }
    return true;
}

void* SharedLibrary::Symbol(const char* name) const {
    return dlsym(handle_, name);
}

void SharedLibrary::Close() {
    if (handle_ != nullptr) dlclose(handle_);
    handle_ = nullptr;
}

#endif
