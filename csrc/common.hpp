// Shared helpers of the native kernels: thread count and row-band parallelism.
#pragma once
#include <algorithm>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

namespace ttsfast {

// Number of worker threads to use: `requested` if > 0, else the hardware concurrency.
inline int resolve_threads(int requested) {
    if (requested > 0) return requested;
    unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
}

// Run fn(begin, end) over [0, n) split into at most `threads` contiguous bands.
// Bands are computed on the calling thread plus threads-1 workers; no global pool.
inline void parallel_bands(std::ptrdiff_t n, int threads,
                           const std::function<void(std::ptrdiff_t, std::ptrdiff_t)>& fn) {
    if (n <= 0) return;
    int t = std::max(1, std::min<int>(threads, static_cast<int>(n)));
    if (t == 1) { fn(0, n); return; }
    std::vector<std::thread> pool;
    pool.reserve(t - 1);
    std::ptrdiff_t chunk = (n + t - 1) / t;
    for (int i = 1; i < t; ++i) {
        std::ptrdiff_t b = i * chunk, e = std::min<std::ptrdiff_t>(n, b + chunk);
        if (b >= e) break;
        pool.emplace_back([&fn, b, e] { fn(b, e); });
    }
    fn(0, std::min<std::ptrdiff_t>(n, chunk));
    for (auto& th : pool) th.join();
}

}  // namespace ttsfast
