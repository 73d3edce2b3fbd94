// Shared helpers of the native kernels: thread count, row-band and guided parallelism.
#pragma once
#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ttsfast {

// Number of worker threads to use: `requested` if > 0, else the hardware concurrency.
inline int resolve_threads(int requested) {
    if (requested > 0) return requested;
    unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
}

// Run fn(i) for i in [0, t): i = 0 on the calling thread, the others on t-1 new threads (no
// global pool).  An exception is kept per thread; after all have joined the first one (by
// i) is rethrown.
inline void run_threads(int t, const std::function<void(int)>& fn) {
    if (t <= 1) { fn(0); return; }
    std::vector<std::exception_ptr> errs(t);
    auto guarded = [&](int i) {
        try {
            fn(i);
        } catch (...) {
            errs[i] = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(t - 1);
    for (int i = 1; i < t; ++i) pool.emplace_back(guarded, i);
    guarded(0);
    for (auto& th : pool) th.join();
    for (auto& e : errs)
        if (e) std::rethrow_exception(e);
}

// Run fn(begin, end) over [0, n) split into at most `threads` contiguous bands.
inline void parallel_bands(std::ptrdiff_t n, int threads,
                           const std::function<void(std::ptrdiff_t, std::ptrdiff_t)>& fn) {
    if (n <= 0) return;
    int t = std::max(1, std::min<int>(threads, static_cast<int>(n)));
    if (t == 1) { fn(0, n); return; }
    const std::ptrdiff_t chunk = (n + t - 1) / t;
    const int bands = static_cast<int>((n + chunk - 1) / chunk);  // non-empty bands only
    run_threads(bands, [&](int i) {
        const std::ptrdiff_t b = i * chunk;
        fn(b, std::min<std::ptrdiff_t>(n, b + chunk));
    });
}

// Run fn(worker, begin, end) over [0, n) on at most `threads` workers that take contiguous
// segments on demand, of decreasing size max(min_chunk, remaining / (2 * threads)) (guided
// scheduling; one worker takes everything at once), so that a thread slowed down by other
// load does not hold the others up at the end.  A range too short for that to balance
// (n <= 4 * threads * min_chunk: e.g. 8 items on 2 threads would go 3 + 3 + 2, one worker
// doing 5) is cut into `threads` equal segments instead, one per worker.  After an exception
// no segment is handed out any more, and the first one (by worker) is rethrown.
inline void parallel_guided(std::ptrdiff_t n, int threads, std::ptrdiff_t min_chunk,
                            const std::function<void(int, std::ptrdiff_t, std::ptrdiff_t)>& fn) {
    if (n <= 0) return;
    const int t = std::max(1, std::min<int>(threads, static_cast<int>(n)));
    min_chunk = std::max<std::ptrdiff_t>(1, min_chunk);
    const bool equal = n <= 4 * t * min_chunk;
    std::mutex mu;
    std::ptrdiff_t next = 0;
    int handed = 0;
    bool failed = false;
    auto grab = [&](std::ptrdiff_t& b, std::ptrdiff_t& e) {
        std::lock_guard<std::mutex> lk(mu);
        const std::ptrdiff_t rem = n - next;
        if (rem <= 0 || failed) return false;
        const std::ptrdiff_t sz =
            t == 1 ? rem
            : equal ? rem / (t - handed)  // the remaining items over the workers still to start
                    : std::min(rem, std::max(min_chunk, rem / (2 * t)));
        ++handed;
        b = next;
        e = next + sz;
        next = e;
        return true;
    };
    run_threads(t, [&](int i) {
        try {
            std::ptrdiff_t b, e;
            while (grab(b, e)) fn(i, b, e);
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu);
            failed = true;  // stop the others early
            throw;
        }
    });
}

}  // namespace ttsfast
