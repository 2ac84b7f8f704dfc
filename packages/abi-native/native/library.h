// A shared library opened by path: dlopen on POSIX, LoadLibraryExW on Windows.
#pragma once

#include <string>

class SharedLibrary {
public:
    SharedLibrary() = default;
    SharedLibrary(const SharedLibrary&) = delete;
    SharedLibrary& operator=(const SharedLibrary&) = delete;

    // Opens the library at `path` (absolute, UTF-8). On failure returns false and sets `error` to the
    // system loader's reason.
    bool Open(const std::string& path, std::string& error);

    // The address of an exported symbol, or nullptr.
    void* Symbol(const char* name) const;

    // Unloads the library. The caller makes sure no thread is running or will run its code.
    void Close();

private:
    void* handle_ = nullptr;
};
