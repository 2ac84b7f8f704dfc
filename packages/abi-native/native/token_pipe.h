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

    // A token of generation `generation`: its bytes, id and logprob; `first` when it is the generation's first.
    void SendToken(uint32_t generation, bool first, int32_t id, float logprob, const char* text, size_t length);
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
    // The writer thread: writes what is queued, then lets kMinGap pass before the next write, so that tokens
    // coming faster than that leave together (one wake-up of the node for several). What is urgent leaves at
    // once: the first token after a pause, a generation's first token (what its client waits for as time to
    // first token) and a generation's end (its last text, and the end of the client's wait).
    void Run();
    // After a frame was queued (lock held): wakes the writer if it waits for frames, or if the frame is urgent and
    // the writer waits for its gap to pass.
    void Queued(std::unique_lock<std::mutex>& lock, bool urgent);
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
    bool urgent_ = false;  // an urgent frame is queued: the writer's gap ends
    bool broken_ = false;  // the node is gone: frames are dropped
    std::condition_variable wake_;
    std::condition_variable room_;  // producers wait here while kMaxQueued bytes are queued
    std::thread writer_;
};
