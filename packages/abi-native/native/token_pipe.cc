#include "token_pipe.h"

#include <cerrno>
#include <cstring>
#include <utility>

#if defined(_WIN32)
#  include <uv.h>  // uv_get_osfhandle: the handle behind a C runtime fd, as Node's own runtime numbers them
#  include <windows.h>
#else
#  include <unistd.h>
#endif

namespace {

TokenPipe* g_pipe = nullptr;

enum FrameKind : uint8_t { kTokens = 0, kEnd = 1 };

void AppendU32(std::string& out, uint32_t value) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

}  // namespace

TokenPipe* TokenPipe::Get() {
    return g_pipe;
}

void TokenPipe::Open(int fd) {
    if (g_pipe == nullptr) g_pipe = new TokenPipe(fd);  // lives as long as the process
}

TokenPipe::TokenPipe(int fd) : fd_(fd), writer_(&TokenPipe::Run, this) {
    writer_.detach();
}

// Every write wakes the node, and where the node and the plugin share few cores each wake-up takes one from the
// plugin: two wake-ups a token cost a few percent of decode speed (bench/isolation). So the writer writes at most
// once per frame of a 60 Hz screen (16.7 ms): a stream's text cannot reach a reader's eyes more often than that.
// On two cores, against a gap of 6 ms: single stream +13%, 4-stream aggregate +6% (eight interleaved rounds,
// docs/performance.md; 6 ms was itself +12% and +6% against 2 ms). What a client waits for, a generation's first
// token and its end, does not wait for the gap.
constexpr auto kMinGap = std::chrono::microseconds(16000);
constexpr size_t kMaxQueued = 16 << 20;
constexpr size_t kMaxFrameText = 64 << 10;

void TokenPipe::WaitForRoom(std::unique_lock<std::mutex>& lock) {
    room_.wait(lock, [&] { return queued_bytes_ < kMaxQueued || broken_; });
}

void TokenPipe::Queued(std::unique_lock<std::mutex>& lock, bool urgent) {
    const bool wake = idle_ || (urgent && !urgent_);
    urgent_ = urgent_ || urgent;
    if (wake) {
        idle_ = false;
        lock.unlock();
        wake_.notify_one();
    }
}

void TokenPipe::Run() {
    std::vector<Frame> frames;
    std::string bytes;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        wake_.wait(lock, [&] { return !queued_.empty(); });
        frames.swap(queued_);
        open_.clear();
        queued_bytes_ = 0;
        urgent_ = false;
        lock.unlock();
        room_.notify_all();
        bytes.clear();
        for (const Frame& frame : frames) Serialize(frame, bytes);
        frames.clear();
        WriteAll(bytes);
        lock.lock();
        wake_.wait_for(lock, kMinGap, [&] { return urgent_; });
        if (queued_.empty()) idle_ = true;
    }
}

void TokenPipe::SendToken(uint32_t generation, bool first, int32_t id, float logprob, const char* text, size_t length) {
    std::unique_lock<std::mutex> lock(mutex_);
    WaitForRoom(lock);
    if (broken_) return;
    queued_bytes_ += length + 12;
    auto open = open_.find(generation);
    if (open != open_.end() && queued_[open->second].bytes.size() >= kMaxFrameText) {
        open_.erase(open);  // a frame the reader can take in a few reads: the next tokens start another
        open = open_.end();
    }
    if (open == open_.end()) {
        queued_.push_back(Frame{generation, false, {}, {}, {}, {}});
        open = open_.emplace(generation, queued_.size() - 1).first;
    }
    Frame& frame = queued_[open->second];
    frame.bytes.append(text, length);
    frame.ids.push_back(id);
    frame.logprobs.push_back(logprob);
    frame.ends.push_back(static_cast<uint32_t>(frame.bytes.size()));
    Queued(lock, first);
}

void TokenPipe::SendEnd(uint32_t generation, const std::string& outcome) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (broken_) return;
    queued_bytes_ += outcome.size();
    open_.erase(generation);
    queued_.push_back(Frame{generation, true, outcome, {}, {}, {}});
    Queued(lock, true);
}

// Little-endian: u32 size (the bytes after it), u32 generation, u8 kind; then for tokens u32 count, count
// i32 ids, count f32 logprobs, count u32 byte ends, the text bytes; for the end, its JSON.
void TokenPipe::Serialize(const Frame& frame, std::string& out) {
    const size_t count = frame.ids.size();
    const size_t body = frame.end ? frame.bytes.size() : 4 + 12 * count + frame.bytes.size();
    AppendU32(out, static_cast<uint32_t>(5 + body));
    AppendU32(out, frame.generation);
    out.push_back(static_cast<char>(frame.end ? kEnd : kTokens));
    if (!frame.end) {
        AppendU32(out, static_cast<uint32_t>(count));
        for (int32_t id : frame.ids) AppendU32(out, static_cast<uint32_t>(id));
        for (float logprob : frame.logprobs) {
            uint32_t bits;
            std::memcpy(&bits, &logprob, sizeof bits);
            AppendU32(out, bits);
        }
        for (uint32_t end : frame.ends) AppendU32(out, end);
    }
    out.append(frame.bytes);
}

// Blocks while the pipe is full: a node that reads slowly slows the plugin down rather than this process
// buffering without end.
void TokenPipe::WriteAll(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
#if defined(_WIN32)
        DWORD written = 0;
        HANDLE handle = reinterpret_cast<HANDLE>(uv_get_osfhandle(fd_));
        long long wrote =
            WriteFile(handle, bytes.data() + done, static_cast<DWORD>(bytes.size() - done), &written, nullptr)
                ? static_cast<long long>(written)
                : -1;
#else
        ssize_t wrote = write(fd_, bytes.data() + done, bytes.size() - done);
        if (wrote < 0 && errno == EINTR) continue;
#endif
        if (wrote <= 0) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                broken_ = true;
                queued_.clear();
            }
            room_.notify_all();
            return;
        }
        done += static_cast<size_t>(wrote);
    }
}
