// Frame pairs of a clip over threads (guided scheduling of common.hpp), buffers reused.
#include <algorithm>
#include <cstdint>
#include <utility>

#include "common.hpp"
#include "flow_internal.hpp"

namespace ttsfast {
namespace flow {

void FBuf::alloc(std::size_t n, int off) {
    if (p && v.size() >= n + static_cast<std::size_t>(cur_off) + 16) return;
    v.assign(n + static_cast<std::size_t>(off) + 16, 0.f);
    cur_off = off;
    auto a = reinterpret_cast<std::uintptr_t>(v.data());
    a = (a + 63) & ~static_cast<std::uintptr_t>(63);
    p = reinterpret_cast<float*>(a) + off;
}

namespace {

// Pairs p0 .. p1-1 with one workspace: frame p0 is expanded once more, every other frame
// serves as frame t+1 of one pair and frame t of the next.
void run_segment(const Kernels& k, const Job& job, int p0, int p1, Workspace& w) {
    k.expand_frame(job, p0, w, w.Ra, kOffRa, false);
    for (int t = p0; t < p1; ++t) {
        // alternate which buffer holds frame t so that no copy is needed
        k.expand_frame(job, t + 1, w, w.Rb, kOffRb, true);
        k.flow_pair(job, t, w);
        std::swap(w.Ra, w.Rb);
    }
}

}  // namespace

RunStats compute_flow(const Job& job, int threads, bool profile, std::vector<Workspace>* keep) {
    const Kernels& kern = *flow_kernels().kernels;
    const int npairs = job.T - 1;
    const int nt = std::max(1, std::min(resolve_threads(threads), npairs));
    std::vector<Workspace> fresh;
    std::vector<Workspace>& ws = keep ? *keep : fresh;
    if (static_cast<int>(ws.size()) < nt) ws.resize(nt);
    for (auto& w : ws) {
        w.tm = Timers{};
        w.tm.on = profile;
    }
    parallel_guided(npairs, nt, 3, [&](int i, std::ptrdiff_t p0, std::ptrdiff_t p1) {
        run_segment(kern, job, static_cast<int>(p0), static_cast<int>(p1), ws[i]);
    });
    RunStats st;
    st.threads = nt;
    for (int s = 0; s < kNumSteps; ++s)
        for (const auto& w : ws) st.t[s] += w.tm.t[s];
    return st;
}

}  // namespace flow
}  // namespace ttsfast
