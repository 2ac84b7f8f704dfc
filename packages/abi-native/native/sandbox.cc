#include "sandbox.h"

#include <cerrno>
#include <cstring>

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#  define LLM_NODE_SECCOMP 1
#  include <linux/audit.h>
#  include <linux/filter.h>
#  include <linux/seccomp.h>
#  include <signal.h>
#  include <stddef.h>
#  include <sys/prctl.h>
#  include <sys/socket.h>
#  include <sys/syscall.h>
#  include <ucontext.h>
#  include <unistd.h>
#elif defined(__APPLE__)
#  include <cstdint>
// sandbox.h declares these deprecated (and the profile constants unavailable) for new code; the calls and
// the named profile still work on every macOS that Node supports.
extern "C" int sandbox_init(const char* profile, uint64_t flags, char** errorbuf);
extern "C" void sandbox_free_error(char* errorbuf);
extern "C" const char kSBXProfileNoNetwork[];
#  define SANDBOX_NAMED 0x0001
#endif

#if defined(LLM_NODE_SECCOMP)
namespace {

#  if defined(__x86_64__)
constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
#  else
constexpr uint32_t kArch = AUDIT_ARCH_AARCH64;
#  endif

// Appends the decimal digits of `value` (async-signal-safe: no stdio, no allocation).
char* AppendNumber(char* out, long value) {
    char digits[24];
    int n = 0;
    bool negative = value < 0;
    unsigned long v = negative ? 0UL - static_cast<unsigned long>(value) : static_cast<unsigned long>(value);
    do {
        digits[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (negative) *out++ = '-';
    while (n > 0) *out++ = digits[--n];
    return out;
}

// The filter traps socket() for a family other than AF_UNIX; this handler makes that call fail with EPERM
// and writes the marker line the node reads on the engine host's stderr to report the attempt.
void OnDeniedSocket(int, siginfo_t*, void* context) {
    auto* uc = static_cast<ucontext_t*>(context);
#  if defined(__x86_64__)
    long family = static_cast<long>(uc->uc_mcontext.gregs[REG_RDI]);
    uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
#  else
    long family = static_cast<long>(uc->uc_mcontext.regs[0]);
    uc->uc_mcontext.regs[0] = static_cast<unsigned long long>(-EPERM);
#  endif
    char line[sizeof(kDeniedSocketMarker) + 32];
    char* end = line;
    std::memcpy(end, kDeniedSocketMarker, sizeof(kDeniedSocketMarker) - 1);
    end += sizeof(kDeniedSocketMarker) - 1;
    end = AppendNumber(end, family);
    *end++ = '\n';
    int saved = errno;
    ssize_t ignored = write(STDERR_FILENO, line, static_cast<size_t>(end - line));
    (void)ignored;
    errno = saved;
}

// systemd's RestrictAddressFamilies= shape, reduced to an allow list of one: socket() may create AF_UNIX
// sockets only (the engine host's pipe to the node is one, and stays open); io_uring, which can create
// sockets without socket(), is refused; so are system calls of another ABI (x32, 32-bit), which this filter
// does not inspect.
SandboxResult InstallSeccomp() {
    struct sigaction action {};
    action.sa_sigaction = OnDeniedSocket;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSYS, &action, nullptr) != 0) return {false, std::string("sigaction: ") + std::strerror(errno)};

    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
#  if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
#  endif
#  if defined(__NR_io_uring_setup)
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
#  endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        // The family: the low 32 bits of the first argument (both architectures are little-endian).
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return {false, std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + std::strerror(errno)};
    }
    // TSYNC: every thread the process already has (Node's and libuv's) gets the filter, not just this one.
    // SPEC_ALLOW: the filter is about the network, not side channels; without it kernels that mitigate
    // speculative store bypass for seccomp'd processes slow the plugin's arithmetic down for nothing.
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                &program) != 0) {
        return {false, std::string("seccomp: ") + std::strerror(errno)};
    }
    return {true, "seccomp: socket() allows AF_UNIX only"};
}

}  // namespace
#endif

SandboxResult DenyNetwork() {
#if defined(LLM_NODE_SECCOMP)
    return InstallSeccomp();
#elif defined(__APPLE__)
    char* error = nullptr;
    if (sandbox_init(kSBXProfileNoNetwork, SANDBOX_NAMED, &error) != 0) {
        std::string reason = std::string("sandbox_init: ") + (error != nullptr ? error : "failed");
        if (error != nullptr) sandbox_free_error(error);
        return {false, reason};
    }
    return {true, "sandbox_init: the no-network profile"};
#else
    return {false, "not enforced on this platform"};
#endif
}
