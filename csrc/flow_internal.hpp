// Dense optical flow (Farneback polynomial-expansion method) over a whole clip.
//
// Numerics follow OpenCV's cv::calcOpticalFlowFarneback (same pyramid construction, same
// polynomial expansion, same matrix update, same box / Gaussian window and same
// regularised 2x2 solve), reimplemented for clips:
//   * the pyramid and the polynomial expansion of every frame are computed once and used by
//     both pairs the frame belongs to (OpenCV recomputes them for every pair);
//   * planar float32 buffers with contiguous rows that the compiler vectorises (plane
//     strides chosen to avoid 4 KiB cache-set aliasing), frame t+1 also interleaved for
//     the bilinear gathers of the matrix update;
//   * the window blur, the 2x2 solve and the next matrix update are fused into one pass over
//     the rows (a matrix row is replaced as soon as the window no longer reads it), and all
//     iterations of a pyramid level run as one wavefront over the rows;
//   * threads take contiguous segments of frame pairs, GIL released, buffers reused;
//   * an optional sector mask restricts the work to the rows/columns it touches, and
//     without one, work is skipped far from every non-zero pixel of the clip (black echo
//     background), where the result is exactly 0 in OpenCV as well;
//   * one departure, with a mask and edge_margin > 0 only: the matrices of pixels within
//     edge_margin px (per level) of the mask's border get weight 0 (see make_certainty), so
//     that the static sector edge does not pull the flow of the tissue beside it to zero.
//
// Files: flow_pyramid.cpp (pyramid, polynomial expansion, frame expansion),
// flow_iterate.cpp (matrix update, window/solve iterations, pair driver): the hot kernels,
// compiled once per instruction set (flow_kernels.hpp); flow_isa.cpp (run-time choice of
// that copy), flow_job.cpp (per-call setup: levels, windows, spans, certainty),
// flow_schedule.cpp (pairs over threads), flow_binding.cpp (argument checks and the Python
// binding).
//
// The types here are shared by both copies of the kernels; inline helpers of the kernels
// belong in flow_kernels.hpp, in the copy's namespace (see there: one-definition rule).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ttsfast {
namespace flow {

using Clock = std::chrono::steady_clock;

// ----------------------------------------------------------------------------------------
// Parameters and pyramid geometry
// ----------------------------------------------------------------------------------------
struct Params {
    double pyr_scale;
    int levels;
    int winsize;
    int iterations;
    int poly_n;
    double poly_sigma;
    bool gaussian;
};

struct Level {
    int w, h;
    std::vector<float> kern;  // Gaussian pre-smoothing kernel (odd length), full resolution
};

// Polynomial expansion constants (Gaussian applicability, inverse moment matrix).
struct PolyConsts {
    int n;
    float g[8], xg[8], xxg[8];  // index 0..n
    double ig11, ig03, ig33, ig55;
};

// ----------------------------------------------------------------------------------------
// Per-step timers (seconds, summed over threads)
// ----------------------------------------------------------------------------------------
enum Step {
    kPyramid, kPolyExp, kMatrices, kWinVert, kWinHorz, kSolve, kIterMatrices, kUpsample,
    kOutput, kNumSteps
};
inline constexpr const char* kStepNames[kNumSteps] = {
    "pyramid", "poly_exp", "update_matrices_init", "window_vertical", "window_horizontal",
    "solve", "update_matrices_iter", "flow_upsample", "output"};

struct Timers {
    double t[kNumSteps] = {};
    bool on = false;
    Clock::time_point t0;
    void start() {
        if (on) t0 = Clock::now();
    }
    void stop(Step s) {
        if (on) t[s] += std::chrono::duration<double>(Clock::now() - t0).count();
    }
    // add the time since the last start/lap to step s and restart the clock
    void lap(Step s) {
        if (on) {
            auto now = Clock::now();
            t[s] += std::chrono::duration<double>(now - t0).count();
            t0 = now;
        }
    }
};

// Row span [x0, x1) that needs work on each row of one level (from the mask), or the full
// width.  rows_lo/rows_hi bound the rows with any work.
struct Span {
    std::vector<int> x0, x1;
    int y0 = 0, y1 = 0;
};

// ----------------------------------------------------------------------------------------
// Buffers (planes spaced by pstride, flow_kernels.hpp).
// ----------------------------------------------------------------------------------------
// Callers rely on a buffer being 0 wherever they never write (outside the spans): what an
// FBuf holds at p[i] must stay at p[i] from one alloc call to the next.  So `off` applies
// only when the buffer is (re)allocated, zeroed; an allocated buffer keeps its position.
// (It used to move to the requested offset: the R buffers, swapped between kOffRa and
// kOffRb, then exposed the previous frame's expansion shifted by 136 floats when a thread
// started its next segment of pairs, and the flow depended on the schedule.)
struct FBuf {
    std::vector<float> v;
    float* p = nullptr;
    int cur_off = 0;
    // at least n floats starting `off` floats (when allocated) after a 64-byte boundary
    // (flow_schedule.cpp)
    void alloc(std::size_t n, int off);
};
enum BufOffset { kOffRa = 16, kOffRb = 152, kOffM = 600, kOffFx = 760, kOffFy = 904 };

struct IterState {
    std::vector<double> vsum;  // box: 5 padded rows of vertical running sums
    bool update = false;
};

// ----------------------------------------------------------------------------------------
// Per-thread workspace
// ----------------------------------------------------------------------------------------
struct Workspace {
    std::vector<float> fimg;              // frame as float, full resolution
    std::vector<float> vrow, hrow[2];     // pyramid smoothing rows
    int hrow_idx[2] = {-1, -1};
    std::vector<float> limg;              // one level image
    std::vector<float> pr0, pr1, pr2;     // poly-exp vertical rows (padded)
    std::vector<float> um;                // matrix-update row scratch
    std::vector<FBuf> Ra, Rb;             // poly expansion per level: 5 planes each
    std::vector<FBuf> Ml;                 // 5 planes per level (zeroed once)
    float* Mp = nullptr;                  // M of the current level
    std::vector<FBuf> R1i;                // R of frame t+1 interleaved, per level
    FBuf fx, fy, pfx, pfy;                // flow planes (current / previous level)
    std::vector<double> vsum;             // 5 padded rows for the box window
    std::vector<float> vsumf;             // 5 padded rows for the Gaussian window
    std::vector<double> hs;               // 5 rows of window sums
    std::vector<float> hsf;               // one row of Gaussian window sums
    std::vector<IterState> iters;         // per-iteration state of the wavefront
    Timers tm;
};

// ----------------------------------------------------------------------------------------
// The clip driver
// ----------------------------------------------------------------------------------------
struct Job {
    const void* frames;
    bool is_u8;
    int T, H, W;
    Params p;
    std::vector<Level> levels;
    PolyConsts pc;
    std::vector<float> gwin;  // Gaussian window kernel (half, index 0..m)
    std::vector<Span> spans;  // per level, empty when no mask
    std::vector<std::vector<float>> wts;  // per level certainty planes, empty when unused
    const std::uint8_t* mask;
    float* out;
};

// ----------------------------------------------------------------------------------------
// Functions shared between the flow files
// ----------------------------------------------------------------------------------------
// The hot kernels (flow_pyramid.cpp, flow_iterate.cpp), one table per compiled copy.
struct Kernels {
    // Load frame t, build its pyramid and polynomial expansion into R (buffer offset `off`);
    // with `interleave` also the interleaved copy ws.R1i used as frame t+1 of a pair.
    void (*expand_frame)(const Job& job, int t, Workspace& ws, std::vector<FBuf>& R, int off,
                         bool interleave);
    // Flow of pair t -> t+1 (frames already in ws.Ra / ws.R1i) into job.out.
    void (*flow_pair)(const Job& job, int t, Workspace& ws);
};
namespace isa_base { extern const Kernels kernels; }  // baseline build of the target
namespace isa_avx2 { extern const Kernels kernels; }  // -mavx2 (x86, GCC/Clang builds only)

// flow_isa.cpp: the copy a call runs now: the AVX2 one when built and the CPU has AVX2,
// else the baseline; the environment variable TTSFAST_FLOW_ISA=baseline forces the baseline
// (=avx2 requires the AVX2 copy; unset, empty or auto: the best).  Throws
// std::invalid_argument for another value, std::runtime_error for avx2 where it cannot run.
struct KernelCopy {
    const char* isa;  // "avx2" or "baseline"
    const Kernels* kernels;
};
KernelCopy flow_kernels();

// flow_job.cpp
std::vector<Level> make_levels(int W, int H, const Params& p);
PolyConsts make_poly_consts(int n, double sigma);
// Derived fields of a job whose frames, size, params and mask are set.
void prepare_job(Job& job, bool skip_blank, int edge_margin);
// Fraction of the finest level the spans cover (1 without spans).
double computed_fraction(const Job& job);

// Everything the workspaces' layout depends on: the size, the parameters, the levels and
// the spans.  Workspaces may serve another job with an equal key and give the same flow (the
// buffers then hold, outside the spans, the zeros they were allocated with, as between the
// segments of one job); with another key they must be made afresh.
std::vector<double> workspace_key(const Job& job);

// flow_schedule.cpp: all pairs of the clip on up to `threads` threads (0: all cores).
struct RunStats {
    double t[kNumSteps] = {};  // step timings summed over threads (profile only)
    int threads = 1;
};
// `keep`: workspaces kept by the caller for jobs of one key (see workspace_key), used and
// grown to the threads needed; null: fresh ones for this call.
RunStats compute_flow(const Job& job, int threads, bool profile, std::vector<Workspace>* keep = nullptr);

}  // namespace flow
}  // namespace ttsfast
