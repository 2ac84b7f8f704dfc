// The engine host's token channel: generated tokens written straight from the plugin's threads to a pipe the
// node reads, so that no JavaScript runs in the engine host per token (src/token-frames.ts reads the frames).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

class TokenPipe {
public:
    // The process's pipe, once Open() was called; nullptr before.
    static TokenPipe* Get();
    // Writes to `fd` from now on (the engine host's fd 4). Once per process.
    static void Open(int fd);

    // A token of generation `generation`: its bytes, id and logprob.
    void SendToken(uint32_t generation, int32_t id, float logprob, const char* text, size_t length);
    // The end of generation `generation`, last of its frames: `outcome` is the JSON of how it ended.
    void SendEnd(uint32_t generation, const std::string& outcome);

private:
    // A frame waiting to be written: a generation's tokens since its last frame, or its end.
    struct Frame {
        uint32_t generation;
        bool end;
        std::string bytes;  // the tokens' text one after another, or the end's JSON
        std::vector<int32_t> ids;
        std::vector<float> logprobs;
        std::vector<uint32_t> ends;  // where each token's bytes end in `bytes`
    };

    explicit TokenPipe(int fd);
    // The writer thread: writes what is queued, then lets at least kMinGap pass before the next write, so that
    // tokens coming faster than that leave together (one wake-up of the node for several). The first token after
    // a pause leaves at once.
    void Run();
    // After a frame was queued (lock held): wakes the writer if it waits for frames.
    void Queued(std::unique_lock<std::mutex>& lock);
    // Before queueing (lock held): while the node reads slower than tokens come, the plugin's thread waits.
    void WaitForRoom(std::unique_lock<std::mutex>& lock);
    static void Serialize(const Frame& frame, std::string& out);
    void WriteAll(const std::string& bytes);

    int fd_;
    std::mutex mutex_;
    std::vector<Frame> queued_;
    std::map<uint32_t, size_t> open_;  // generation -> its token frame in queued_, while more may join it
    size_t queued_bytes_ = 0;
    bool idle_ = true;     // the writer waits for frames (rather than for its gap to pass)
    bool broken_ = false;  // the node is gone: frames are dropped
    std::condition_variable wake_;
    std::condition_variable room_;  // producers wait here while kMaxQueued bytes are queued
    std::thread writer_;
};
