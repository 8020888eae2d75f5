// cuda_emu.h -- run CUDA C kernels on the CPU, for tests (minitune/cuda/emulator.py).
//
// The same kernels/*.cu source that NVRTC compiles for the GPU is compiled by g++ with this
// header forced in front of it. Every CUDA thread of a block becomes a *fiber* (a ucontext with
// its own stack) and one OS thread runs them:
//
//   launch(grid, block): for each block, one after another (so __shared__ can be `static`):
//       every thread runs until it reaches a barrier (or returns); a warp whose 32 lanes all
//       wait in a shuffle/__syncwarp is released and run on at once (so each warp runs ahead
//       to its next __syncthreads before the next warp starts); a block whose live threads
//       all wait in __syncthreads -- on the same source line -- is released; anything else
//       is a deadlock on a GPU too, and is reported, not hung.
//
// Threads run in index order, or in reverse (emu_set_order): between two barriers one thread
// runs to completion before the next starts, so a missing __syncthreads makes a thread read
// shared memory that another has not written yet (or has already overwritten) -- in one of the
// two orders at least -- and the result is wrong every time, not once in a while. Dynamic
// shared memory is filled with NaN at every block start, so reading it unwritten shows too.
//
// Limits: tensor cores only through emu/mma.h's WMMA stand-in (indexing, not arithmetic); no
// inline PTX, cp.async or cooperative groups; shuffles with the full mask in full warps only;
// math is the host libm (erff, expf ...), not the GPU's; atomics are trivial since one OS
// thread runs everything.
#pragma once
// Only C headers and two light C++ ones: every kernel file's build parses this header, and
// <functional>, <string> and <vector> would triple the time of a small one.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }

namespace emu {

enum State { RUNNABLE, AT_SYNCTHREADS, AT_WARP_SYNC, DONE };

struct Thread {
    ucontext_t ctx;
    uint3 idx;
    unsigned lane, warp;
    State state;
    int line;                        // source line of the barrier it waits at
    unsigned shuffles;               // shuffles done so far (picks the exchange buffer)
};

struct Warp { unsigned long long slot[2][32]; };

constexpr size_t kStackBytes = 256 * 1024;
inline dim3 grid_dim, block_dim, block_idx;
inline Thread* threads = nullptr;
inline size_t nthreads = 0;
inline Warp* warps = nullptr;
inline char* stacks = nullptr;                         // kStackBytes per thread
inline size_t nstacks = 0;
inline unsigned char* dynamic_smem = nullptr;          // 16-byte aligned
inline size_t dynamic_smem_bytes = 0;
inline Thread* current = nullptr;
inline ucontext_t scheduler;
inline void (*body)(void*) = nullptr;                  // runs the kernel with its arguments
inline void* body_arg = nullptr;
inline char error[1024];
inline int reverse_order = 0;

inline void yield_to_scheduler() { swapcontext(&current->ctx, &scheduler); }

inline void fail(const char* what, int line) {         // called inside a fiber
    if (!error[0]) snprintf(error, sizeof error, "%s (line %d)", what, line);
    current->state = DONE;
    yield_to_scheduler();                              // never resumed
}

inline void entry() {
    body(body_arg);
    current->state = DONE;                             // uc_link returns to the scheduler
}

inline int where(char* buf, size_t n, const Thread& t) {
    return snprintf(buf, n, "block (%u,%u,%u) thread (%u,%u,%u)", block_idx.x, block_idx.y,
                    block_idx.z, t.idx.x, t.idx.y, t.idx.z);
}

inline bool warp_ready(unsigned w) {                   // all 32 lanes wait in a shuffle
    size_t lo = size_t(w) * 32;
    if (lo + 32 > nthreads) return false;              // a partial warp: release() reports it
    for (size_t i = lo; i < lo + 32; ++i)
        if (threads[i].state != AT_WARP_SYNC) return false;
    return true;
}

// Release whoever may go on; false when nobody can (all done, or a deadlock: error is set).
inline bool release() {
    bool any = false;
    size_t n = nthreads;
    for (size_t w = 0; w * 32 < n; ++w) {              // warps: all lanes in a shuffle/syncwarp
        size_t lo = w * 32, hi = n < lo + 32 ? n : lo + 32;
        size_t waiting = 0, done = 0;
        for (size_t i = lo; i < hi; ++i) {
            waiting += threads[i].state == AT_WARP_SYNC;
            done += threads[i].state == DONE;
        }
        if (!waiting) continue;
        if (waiting == 32) {
            for (size_t i = lo; i < hi; ++i) threads[i].state = RUNNABLE;
            any = true;
        } else {
            char at[96];
            where(at, sizeof at, threads[lo]);
            snprintf(error, sizeof error, "warp %zu of %s: a shuffle/__syncwarp (line %d) needs "
                     "all 32 lanes, but %zu have exited, %zu wait at __syncthreads%s", w, at,
                     threads[lo].line, done, hi - lo - waiting - done,
                     hi - lo < 32 ? " (partial warp: blockDim is not a multiple of 32)" : "");
            return false;
        }
    }
    if (any) return true;
    int line = -1;
    for (size_t i = 0; i < n; ++i) {                   // the block: live threads at one line
        Thread& t = threads[i];
        if (t.state == DONE) continue;
        if (t.state != AT_SYNCTHREADS) return false;
        if (line >= 0 && t.line != line) {
            char at[96];
            where(at, sizeof at, t);
            snprintf(error, sizeof error, "__syncthreads on different lines (%d and %d) in %s: "
                     "a barrier in divergent code deadlocks on a GPU", line, t.line, at);
            return false;
        }
        line = t.line;
    }
    if (line < 0) return false;                        // every thread has returned
    for (size_t i = 0; i < n; ++i)
        if (threads[i].state == AT_SYNCTHREADS) threads[i].state = RUNNABLE;
    return true;
}

inline void run_block() {
    size_t n = nthreads;
    for (size_t i = 0; i < n; ++i) {
        Thread& t = threads[i];
        t.state = RUNNABLE;
        t.shuffles = 0;
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = stacks + i * kStackBytes;
        t.ctx.uc_stack.ss_size = kStackBytes;
        t.ctx.uc_link = &scheduler;
        makecontext(&t.ctx, entry, 0);
    }
    memset(dynamic_smem, 0xff, dynamic_smem_bytes);    // NaN: reading unwritten smem shows
    long long N = (long long)n;
    while (true) {
        bool progressed = false;
        for (long long k = 0; k < N; ++k) {
            Thread& t = threads[reverse_order ? N - 1 - k : k];
            if (t.state != RUNNABLE) continue;
            current = &t;
            swapcontext(&scheduler, &t.ctx);
            progressed = true;
            if (error[0]) return;
            // The last lane of a warp reached its shuffle: release the warp and run it on at
            // once, from its first lane. Each warp thus runs ahead to a __syncthreads before
            // the next one starts -- as if warps ran at very different speeds -- so a race
            // between warps (a missing barrier around shared memory) corrupts the result.
            if (t.state == AT_WARP_SYNC && warp_ready(t.warp)) {
                long long lo = t.warp * 32LL, hi = lo + 31 < N ? lo + 31 : N - 1;
                for (long long i = lo; i <= hi; ++i) threads[i].state = RUNNABLE;
                k = (reverse_order ? N - 1 - hi : lo) - 1;
            }
        }
        if (!progressed && !release()) break;
    }
    if (!error[0])
        for (size_t i = 0; i < n; ++i)
            if (threads[i].state != DONE) {
                char at[96];
                where(at, sizeof at, threads[i]);
                snprintf(error, sizeof error, "deadlock: %s waits at a barrier (line %d) that "
                         "no other thread reaches", at, threads[i].line);
                return;
            }
}

inline int launch(dim3 grid, dim3 block, size_t smem_bytes, void (*fn)(void*), void* arg) {
    error[0] = 0;
    size_t n = size_t(block.x) * block.y * block.z;
    if (n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        snprintf(error, sizeof error, "invalid launch: block of %zu threads (1..1024), grid "
                 "(%u,%u,%u)", n, grid.x, grid.y, grid.z);
        return 1;
    }
    grid_dim = grid;
    block_dim = block;
    body = fn;
    body_arg = arg;
    free(threads);
    free(warps);
    threads = static_cast<Thread*>(calloc(n, sizeof(Thread)));
    warps = static_cast<Warp*>(calloc((n + 31) / 32, sizeof(Warp)));
    nthreads = n;
    if (nstacks < n) {
        free(stacks);
        stacks = static_cast<char*>(malloc(n * kStackBytes));
        nstacks = n;
    }
    free(dynamic_smem);
    dynamic_smem = static_cast<unsigned char*>(aligned_alloc(16, (smem_bytes + 15) / 16 * 16 + 16));
    dynamic_smem_bytes = smem_bytes;
    for (size_t i = 0; i < n; ++i) {
        threads[i].idx = {unsigned(i % block.x), unsigned(i / block.x % block.y),
                          unsigned(i / (size_t(block.x) * block.y))};
        threads[i].lane = i % 32;
        threads[i].warp = i / 32;
    }
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                block_idx = dim3(x, y, z);
                run_block();
                if (error[0]) return 1;
            }
    return 0;
}

// One warp-wide exchange: every lane publishes `v`, waits for the whole warp, reads lane src.
template <class T>
inline T exchange(unsigned mask, T v, int src, int line) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    if (mask != 0xffffffffu)
        fail("a shuffle with a partial mask: the emulator supports the full mask only", line);
    Warp& w = warps[current->warp];
    unsigned buf = current->shuffles++ & 1;            // alternate: a fast lane cannot overwrite
    unsigned long long bits = 0;                       // a slot a slow one has not read yet
    memcpy(&bits, &v, sizeof(T));
    w.slot[buf][current->lane] = bits;
    current->state = AT_WARP_SYNC;
    current->line = line;
    yield_to_scheduler();
    T out;
    memcpy(&out, &w.slot[buf][src], sizeof(T));
    return out;
}

// A kernel's parameter list as codes for the Python side's argument check: "p" pointer or "s"
// scalar, then "f" float, "i" signed or "u" unsigned, then the byte size ("pf4 si4 su8").
template <class T>
void append_code(char* out) {
    using U = std::remove_cv_t<std::remove_pointer_t<T>>;
    char kind = std::is_floating_point_v<U> ? 'f' : std::is_signed_v<U> ? 'i' : 'u';
    size_t n = strlen(out);
    snprintf(out + n, 512 - n, "%c%c%zu ", std::is_pointer_v<T> ? 'p' : 's', kind, sizeof(U));
}
template <class... P>
const char* signature(void (*)(P...)) {
    static char out[512];
    out[0] = 0;
    (append_code<P>(out), ...);
    return out;
}

// Unpack a void* argument array as cuLaunchKernel does: argument i is *(P_i*)args[i].
template <class... P, size_t... I>
void call(void (*f)(P...), void** a, std::index_sequence<I...>) {
    f(*reinterpret_cast<std::remove_reference_t<P>*>(a[I])...);
}
template <class... P>
int launch_kernel(void (*f)(P...), dim3 grid, dim3 block, size_t smem, void** a) {
    struct Closure { void (*f)(P...); void** a; } closure{f, a};
    return launch(grid, block, smem, [](void* c) {
        auto* cl = static_cast<Closure*>(c);
        call(cl->f, cl->a, std::index_sequence_for<P...>{});
    }, &closure);
}

}  // namespace emu

#define threadIdx (emu::current->idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads(int line = __builtin_LINE()) {
    emu::current->state = emu::AT_SYNCTHREADS;
    emu::current->line = line;
    emu::yield_to_scheduler();
}
inline void __syncwarp(unsigned mask = 0xffffffffu, int line = __builtin_LINE()) {
    emu::exchange<int>(mask, 0, emu::current->lane, line);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                         int line = __builtin_LINE()) {
    int lane = emu::current->lane, src = lane ^ lane_mask;   // a later group: own value
    return emu::exchange<T>(mask, v, src / width > lane / width ? lane : src, line);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                          int line = __builtin_LINE()) {
    int lane = emu::current->lane, src = lane + int(delta);
    return emu::exchange<T>(mask, v, src / width == lane / width ? src : lane, line);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32,
                     int line = __builtin_LINE()) {
    int lane = emu::current->lane;
    return emu::exchange<T>(mask, v, lane / width * width + src_lane % width, line);
}

template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> inline T __ldg(const T* p) { return *p; }

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __fadd_rn(float a, float b) { return a + b; }      // x86-64 g++ without -mfma
inline float __fsub_rn(float a, float b) { return a - b; }      // never fuses a * b + c, so
inline float __fmul_rn(float a, float b) { return a * b; }      // these round each operation
inline float __fdiv_rn(float a, float b) { return a / b; }      // as CUDA's _rn intrinsics do
inline unsigned __umulhi(unsigned a, unsigned b) {
    return unsigned((unsigned long long)a * b >> 32);
}
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

extern "C" const char* emu_last_error() { return emu::error; }
extern "C" void emu_set_order(int reverse) { emu::reverse_order = reverse; }
