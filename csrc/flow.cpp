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
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"

namespace py = pybind11;

namespace {

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

// Round half to even, as OpenCV's cvRound on x86.
inline int round_even(double v) { return static_cast<int>(std::nearbyint(v)); }

std::vector<float> gaussian_kernel(int n, double sigma) {
    // OpenCV's getGaussianKernel: fixed small kernels when sigma <= 0, else sampled Gaussian.
    std::vector<float> k(n);
    if (sigma <= 0 && n == 3) {
        k = {0.25f, 0.5f, 0.25f};
        return k;
    }
    double sx = sigma > 0 ? sigma : ((n - 1) * 0.5 - 1) * 0.3 + 0.8;
    double scale2 = -0.5 / (sx * sx), sum = 0;
    std::vector<double> t(n);
    for (int i = 0; i < n; ++i) {
        double x = i - (n - 1) * 0.5;
        t[i] = std::exp(scale2 * x * x);
        sum += t[i];
    }
    for (int i = 0; i < n; ++i) k[i] = static_cast<float>(t[i] / sum);
    return k;
}

// Levels finest (index 0) to coarsest, as OpenCV builds them: layer k is the original
// frame smoothed with a Gaussian of sigma (1/scale-1)/2 and resized to round(size*scale);
// layers smaller than 32 px are dropped.  Note: OpenCV processes `levels`+1 layers.
std::vector<Level> make_levels(int W, int H, const Params& p) {
    const int min_size = 32;
    int k;
    double scale = 1;
    for (k = 0; k < p.levels; ++k) {
        scale *= p.pyr_scale;
        if (W * scale < min_size || H * scale < min_size) break;
    }
    const int nlev = k;
    std::vector<Level> lv(nlev + 1);
    for (k = 0; k <= nlev; ++k) {
        double s = 1;
        for (int i = 0; i < k; ++i) s *= p.pyr_scale;
        double sigma = (1. / s - 1) * 0.5;
        int ksz = std::max(round_even(sigma * 5) | 1, 3);
        lv[k].w = round_even(W * s);
        lv[k].h = round_even(H * s);
        lv[k].kern = gaussian_kernel(ksz, sigma);
    }
    return lv;
}

inline int reflect101(int p, int len) {
    if (len == 1) return 0;
    while (p < 0 || p >= len) p = p < 0 ? -p : 2 * len - 2 - p;
    return p;
}

// Polynomial expansion constants (Gaussian applicability, inverse moment matrix).
struct PolyConsts {
    int n;
    float g[8], xg[8], xxg[8];  // index 0..n
    double ig11, ig03, ig33, ig55;
};

PolyConsts make_poly_consts(int n, double sigma) {
    PolyConsts c{};
    c.n = n;
    if (sigma < 1.1920929e-07) sigma = n * 0.3;
    std::vector<float> g(2 * n + 1);
    double s = 0;
    for (int x = -n; x <= n; ++x) {
        g[x + n] = static_cast<float>(std::exp(-x * x / (2 * sigma * sigma)));
        s += g[x + n];
    }
    s = 1. / s;
    for (int x = -n; x <= n; ++x) g[x + n] = static_cast<float>(g[x + n] * s);
    for (int x = 0; x <= n; ++x) {
        c.g[x] = g[x + n];
        c.xg[x] = static_cast<float>(x * g[x + n]);
        c.xxg[x] = static_cast<float>(x * x * g[x + n]);
    }
    // Moments of the applicability for the basis {1, x, y, x^2, y^2, xy}.
    double G[6][6] = {};
    for (int y = -n; y <= n; ++y)
        for (int x = -n; x <= n; ++x) {
            double gy = g[y + n], gx = g[x + n];
            G[0][0] += gy * gx;
            G[1][1] += gy * gx * x * x;
            G[3][3] += gy * gx * x * x * x * x;
            G[5][5] += gy * gx * x * x * y * y;
        }
    G[2][2] = G[0][3] = G[0][4] = G[3][0] = G[4][0] = G[1][1];
    G[4][4] = G[3][3];
    G[3][4] = G[4][3] = G[5][5];
    // Gauss-Jordan inverse (the matrix is symmetric positive definite).
    double A[6][12] = {};
    for (int i = 0; i < 6; ++i) {
        for (int j = 0; j < 6; ++j) A[i][j] = G[i][j];
        A[i][6 + i] = 1;
    }
    for (int col = 0; col < 6; ++col) {
        int piv = col;
        for (int r = col + 1; r < 6; ++r)
            if (std::fabs(A[r][col]) > std::fabs(A[piv][col])) piv = r;
        if (piv != col)
            for (int j = 0; j < 12; ++j) std::swap(A[piv][j], A[col][j]);
        double d = A[col][col];
        for (int j = 0; j < 12; ++j) A[col][j] /= d;
        for (int r = 0; r < 6; ++r) {
            if (r == col) continue;
            double f = A[r][col];
            if (f != 0)
                for (int j = 0; j < 12; ++j) A[r][j] -= f * A[col][j];
        }
    }
    c.ig11 = A[1][6 + 1];
    c.ig03 = A[0][6 + 3];
    c.ig33 = A[3][6 + 3];
    c.ig55 = A[5][6 + 5];
    return c;
}

// ----------------------------------------------------------------------------------------
// Per-step timers (seconds, summed over threads)
// ----------------------------------------------------------------------------------------
enum Step {
    kPyramid, kPolyExp, kMatrices, kWinVert, kWinHorz, kSolve, kIterMatrices, kUpsample,
    kOutput, kNumSteps
};
const char* kStepNames[kNumSteps] = {"pyramid",      "poly_exp",       "update_matrices_init",
                                     "window_vertical", "window_horizontal", "solve",
                                     "update_matrices_iter", "flow_upsample", "output"};

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
// Buffers.  Planes of a multi-plane buffer are spaced so that the same pixel of different
// planes (and of different buffers) falls into different L1 cache sets: with plain w*h
// strides (often a multiple of 4 KiB) the ~20 streams of the matrix update all alias to
// one set and the kernels run several times slower.
// ----------------------------------------------------------------------------------------
inline std::size_t pstride(int w, int h) {
    const std::size_t n = static_cast<std::size_t>(w) * h;
    const std::size_t r = 272;  // plane offset mod 1024 floats (4 KiB): 1088 bytes
    return n <= r ? r : ((n - r + 1023) / 1024) * 1024 + r;
}

struct FBuf {
    std::vector<float> v;
    float* p = nullptr;
    // at least n floats starting `off` floats after a 64-byte boundary
    void alloc(std::size_t n, int off) {
        const std::size_t need = n + static_cast<std::size_t>(off) + 16;
        if (v.size() < need) v.assign(need, 0.f);
        auto a = reinterpret_cast<std::uintptr_t>(v.data());
        a = (a + 63) & ~static_cast<std::uintptr_t>(63);
        p = reinterpret_cast<float*>(a) + off;
    }
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
// Pyramid level of one frame: Gaussian pre-smoothing (reflect-101 border) of the full frame
// and bilinear resize (pixel-centre convention, clamped border), computed row by row so
// that only the smoothed rows the resize samples are ever formed.
// ----------------------------------------------------------------------------------------
void smooth_row(const float* F, int W, int H, int r, const std::vector<float>& k, float* vrow,
                float* out) {
    const int n = static_cast<int>(k.size()), rad = n / 2;
    // vertical
    {
        const float* s = F + static_cast<std::ptrdiff_t>(reflect101(r, H)) * W;
        const float k0 = k[rad];
        for (int x = 0; x < W; ++x) vrow[rad + x] = k0 * s[x];
        for (int i = 1; i <= rad; ++i) {
            const float* a = F + static_cast<std::ptrdiff_t>(reflect101(r - i, H)) * W;
            const float* b = F + static_cast<std::ptrdiff_t>(reflect101(r + i, H)) * W;
            const float ki = k[rad + i];
            float* v = vrow + rad;
            for (int x = 0; x < W; ++x) v[x] += ki * (a[x] + b[x]);
        }
    }
    // reflect-101 padding, then horizontal
    for (int i = 1; i <= rad; ++i) {
        vrow[rad - i] = vrow[rad + reflect101(-i, W)];
        vrow[rad + W - 1 + i] = vrow[rad + reflect101(W - 1 + i, W)];
    }
    const float k0 = k[rad];
    const float* v = vrow + rad;
    for (int x = 0; x < W; ++x) out[x] = k0 * v[x];
    for (int i = 1; i <= rad; ++i) {
        const float ki = k[rad + i];
        for (int x = 0; x < W; ++x) out[x] += ki * (v[x - i] + v[x + i]);
    }
}

void build_level(Workspace& ws, int W, int H, const Level& L) {
    const float* F = ws.fimg.data();
    const int rad = static_cast<int>(L.kern.size()) / 2;
    ws.vrow.resize(W + 2 * rad);
    for (auto& h : ws.hrow) h.resize(W);
    ws.hrow_idx[0] = ws.hrow_idx[1] = -1;
    ws.limg.resize(static_cast<std::size_t>(L.w) * L.h);
    if (L.w == W && L.h == H) {
        for (int y = 0; y < H; ++y)
            smooth_row(F, W, H, y, L.kern, ws.vrow.data(),
                       ws.limg.data() + static_cast<std::ptrdiff_t>(y) * W);
        return;
    }
    auto get_row = [&](int r) -> const float* {
        for (int s = 0; s < 2; ++s)
            if (ws.hrow_idx[s] == r) return ws.hrow[s].data();
        // evict the slot holding the smaller row index (rows are requested in order)
        int s = (ws.hrow_idx[0] <= ws.hrow_idx[1]) ? 0 : 1;
        smooth_row(F, W, H, r, L.kern, ws.vrow.data(), ws.hrow[s].data());
        ws.hrow_idx[s] = r;
        return ws.hrow[s].data();
    };
    const double sx = static_cast<double>(W) / L.w, sy = static_cast<double>(H) / L.h;
    std::vector<int> xi(L.w);
    std::vector<float> xf(L.w);
    for (int i = 0; i < L.w; ++i) {
        float f = static_cast<float>((i + 0.5) * sx - 0.5);
        int s0 = static_cast<int>(std::floor(f));
        f -= s0;
        if (s0 < 0) { s0 = 0; f = 0; }
        if (s0 >= W - 1) { s0 = W - 1; f = 0; }
        xi[i] = s0;
        xf[i] = f;
    }
    for (int j = 0; j < L.h; ++j) {
        float f = static_cast<float>((j + 0.5) * sy - 0.5);
        int s0 = static_cast<int>(std::floor(f));
        f -= s0;
        int r0 = std::min(std::max(s0, 0), H - 1), r1 = std::min(std::max(s0 + 1, 0), H - 1);
        const float* a = get_row(r0);
        const float* b = get_row(r1);
        float* o = ws.limg.data() + static_cast<std::ptrdiff_t>(j) * L.w;
        const float wa = 1.f - f, wb = f;
        for (int i = 0; i < L.w; ++i) {
            int x0 = xi[i], x1 = std::min(x0 + 1, W - 1);
            float fx = xf[i];
            float ta = a[x0] * (1.f - fx) + a[x1] * fx;
            float tb = b[x0] * (1.f - fx) + b[x1] * fx;
            o[i] = ta * wa + tb * wb;
        }
    }
}

// ----------------------------------------------------------------------------------------
// Polynomial expansion: 5 planes (r_y, r_x, r_yy, r_xx, r_xy) of a level image.
// ----------------------------------------------------------------------------------------
// Horizontal part of the polynomial expansion over [xa, xb): x-outer loop with the taps
// unrolled and the six sums in registers (vectorised over x).
template <int N>
__attribute__((noinline)) void poly_exp_hpass(
    const float* __restrict r0, const float* __restrict r1, const float* __restrict r2, int xa,
    int xb, const PolyConsts& c, float ig11, float ig03, float ig33, float ig55,
    float* __restrict ox, float* __restrict oy, float* __restrict oxx, float* __restrict oyy,
    float* __restrict oxy) {
    float g[N + 1], xg[N + 1], xxg[N + 1];
    for (int k = 0; k <= N; ++k) {
        g[k] = c.g[k];
        xg[k] = c.xg[k];
        xxg[k] = c.xxg[k];
    }
#pragma GCC ivdep
    for (int x = xa; x < xb; ++x) {
        float b1 = r0[x] * g[0], b2 = 0.f, b3 = r1[x] * g[0], b4 = 0.f, b5 = r2[x] * g[0],
              b6 = 0.f;
#pragma GCC unroll 8
        for (int k = 1; k <= N; ++k) {
            const float t0 = r0[x + k] + r0[x - k];
            b1 += t0 * g[k];
            b4 += t0 * xxg[k];
            b2 += (r0[x + k] - r0[x - k]) * xg[k];
            b3 += (r1[x + k] + r1[x - k]) * g[k];
            b6 += (r1[x + k] - r1[x - k]) * xg[k];
            b5 += (r2[x + k] + r2[x - k]) * g[k];
        }
        ox[x] = b2 * ig11;
        oy[x] = b3 * ig11;
        oxx[x] = b1 * ig03 + b4 * ig33;
        oyy[x] = b1 * ig03 + b5 * ig33;
        oxy[x] = b6 * ig55;
    }
}

// Vertical part: rows[k] = row y-k (k=0..N), rows[N+1+k] = row y+k, clamped.
template <int N>
__attribute__((noinline)) void poly_exp_vpass(const float* const* rows, int va, int vb,
                                              const PolyConsts& c, float* __restrict r0,
                                              float* __restrict r1, float* __restrict r2) {
    float g[N + 1], xg[N + 1], xxg[N + 1];
    const float* up[N + 1];
    const float* dn[N + 1];
    for (int k = 0; k <= N; ++k) {
        g[k] = c.g[k];
        xg[k] = c.xg[k];
        xxg[k] = c.xxg[k];
        up[k] = rows[k];
        dn[k] = rows[N + 1 + k];
    }
#pragma GCC ivdep
    for (int x = va; x < vb; ++x) {
        float s0 = up[0][x] * g[0], s1 = 0.f, s2 = 0.f;
#pragma GCC unroll 8
        for (int k = 1; k <= N; ++k) {
            const float a = up[k][x], b = dn[k][x];
            const float p = a + b;
            s0 += g[k] * p;
            s1 += xg[k] * (b - a);
            s2 += xxg[k] * p;
        }
        r0[x] = s0;
        r1[x] = s1;
        r2[x] = s2;
    }
}

template <int N>
void poly_exp_rows(Workspace& ws, const float* I, int w, int h, const PolyConsts& c,
                   float* R, int y0, int y1, const Span* span) {
    const std::size_t plane = pstride(w, h);
    ws.pr0.resize(w + 2 * N);
    ws.pr1.resize(w + 2 * N);
    ws.pr2.resize(w + 2 * N);
    float* r0 = ws.pr0.data() + N;
    float* r1 = ws.pr1.data() + N;
    float* r2 = ws.pr2.data() + N;
    const float ig11 = static_cast<float>(c.ig11), ig03 = static_cast<float>(c.ig03),
                ig33 = static_cast<float>(c.ig33), ig55 = static_cast<float>(c.ig55);
    for (int y = y0; y < y1; ++y) {
        int xa = 0, xb = w;
        if (span) {
            xa = span->x0[y];
            xb = span->x1[y];
            if (xa >= xb) continue;  // stays 0 (see poly_exp)
        }
        // vertical part over columns [xa-N, xb+N) clamped to the image
        const int va = std::max(0, xa - N), vb = std::min(w, xb + N);
        {
            const float* rows[2 * N + 2];
            for (int k = 0; k <= N; ++k) {
                rows[k] = I + static_cast<std::ptrdiff_t>(std::max(y - k, 0)) * w;
                rows[N + 1 + k] = I + static_cast<std::ptrdiff_t>(std::min(y + k, h - 1)) * w;
            }
            poly_exp_vpass<N>(rows, va, vb, c, r0, r1, r2);
        }
        // replicate border
        for (int k = 1; k <= N; ++k) {
            r0[-k] = r0[0];
            r1[-k] = r1[0];
            r2[-k] = r2[0];
            r0[w - 1 + k] = r0[w - 1];
            r1[w - 1 + k] = r1[w - 1];
            r2[w - 1 + k] = r2[w - 1];
        }
        float* oy = R + 0 * plane + static_cast<std::size_t>(y) * w;
        float* ox = R + 1 * plane + static_cast<std::size_t>(y) * w;
        float* oyy = R + 2 * plane + static_cast<std::size_t>(y) * w;
        float* oxx = R + 3 * plane + static_cast<std::size_t>(y) * w;
        float* oxy = R + 4 * plane + static_cast<std::size_t>(y) * w;
        poly_exp_hpass<N>(r0, r1, r2, xa, xb, c, ig11, ig03, ig33, ig55, ox, oy, oxx, oyy, oxy);
    }
}

void poly_exp(Workspace& ws, const float* I, int w, int h, const PolyConsts& c, float* R,
              const Span* span) {
    int y0 = 0, y1 = h;
    if (span) {
        // Outside the span R is 0: every R buffer is zeroed when allocated (FBuf::alloc)
        // and, the spans being fixed for the whole call, never written there.
        y0 = span->y0;
        y1 = span->y1;
    }
    if (c.n == 5)
        poly_exp_rows<5>(ws, I, w, h, c, R, y0, y1, span);
    else
        poly_exp_rows<7>(ws, I, w, h, c, R, y0, y1, span);
}

// ----------------------------------------------------------------------------------------
// Matrix update of one row: from the expansions R0 (frame t) and R1 (frame t+1, sampled at
// x + flow) form G = A^T A and h = A^T (db/2 + A d) (5 values per pixel).
// ----------------------------------------------------------------------------------------
typedef float v4sf __attribute__((vector_size(16)));
inline v4sf ld4(const float* p) {
    v4sf v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

// R (5 planes) -> 5 consecutive floats per pixel, for the bilinear gathers of the matrix
// update (the buffer needs 3 floats of padding at the end for the last 4-lane load).
void interleave5(const float* __restrict R, int w, int h, float* __restrict out, int y0,
                 int y1) {
    const std::size_t plane = pstride(w, h), n = static_cast<std::size_t>(w) * h;
    const std::size_t i0 = static_cast<std::size_t>(y0) * w, i1 = static_cast<std::size_t>(y1) * w;
    const float* __restrict p0 = R;
    const float* __restrict p1 = R + plane;
    const float* __restrict p2 = R + 2 * plane;
    const float* __restrict p3 = R + 3 * plane;
    const float* __restrict p4 = R + 4 * plane;
    for (std::size_t i = i0; i < i1; ++i) {
        float* o = out + 5 * i;
        o[0] = p0[i];
        o[1] = p1[i];
        o[2] = p2[i];
        o[3] = p3[i];
        o[4] = p4[i];
    }
    out[5 * n] = out[5 * n + 1] = out[5 * n + 2] = 0.f;
}

void update_matrices_row(const float* R0, const float* R1i, const float* fxp, const float* fyp,
                         float* M, int w, int h, int y, int xa, int xb, float* scratch,
                         const float* wt) {
    static const float border[5] = {0.14f, 0.14f, 0.4472f, 0.4472f, 0.4472f};
    const std::size_t plane = pstride(w, h);
    const std::size_t ro = static_cast<std::size_t>(y) * w;
    const float* a0 = R0 + ro;
    const float* a1 = R0 + plane + ro;
    const float* a2 = R0 + 2 * plane + ro;
    const float* a3 = R0 + 3 * plane + ro;
    const float* a4 = R0 + 4 * plane + ro;
    const float* fxr = fxp + ro;
    const float* fyr = fyp + ro;
    float* m0 = M + ro;
    float* m1 = M + plane + ro;
    float* m2 = M + 2 * plane + ro;
    float* m3 = M + 3 * plane + ro;
    float* m4 = M + 4 * plane + ro;
    // s0..s4: R1 sampled bilinearly at (x+dx, y+dy); outside the image the formulas
    // below reduce to OpenCV's (r2=r3=0, r4..r6 from R0 alone) with s = (0, 0, a2, a3, a4).
    float* s0 = scratch;
    float* s1 = s0 + w;
    float* s2 = s1 + w;
    float* s3 = s2 + w;
    float* s4 = s3 + w;
    float* hw = s4 + w;  // weight of the R0 term for r4/r5 (0.5) and r6 (0.25)
    const float wlim = static_cast<float>(w - 1), hlim = static_cast<float>(h - 1);
    const float yf = static_cast<float>(y);
    for (int x = xa; x < xb; ++x) {
        float fx = static_cast<float>(x) + fxr[x], fy = yf + fyr[x];
        if (fx >= 0.f && fx < wlim && fy >= 0.f && fy < hlim) {
            const int x1 = static_cast<int>(fx), y1 = static_cast<int>(fy);
            fx -= x1;
            fy -= y1;
            // R1 interleaved as 5 floats per pixel: coefficients 0-3 of a corner are one
            // 4-lane load; bilinear as two lerps along x and one along y.
            const float* q = R1i + (static_cast<std::size_t>(y1) * w + x1) * 5;
            const std::size_t q1 = static_cast<std::size_t>(w) * 5;
            const v4sf FX = v4sf{fx, fx, fx, fx}, FY = v4sf{fy, fy, fy, fy};
            const v4sf c00 = ld4(q), c01 = ld4(q + 5), c10 = ld4(q + q1), c11 = ld4(q + q1 + 5);
            const v4sf top = c00 + FX * (c01 - c00), bot = c10 + FX * (c11 - c10);
            const v4sf lo = top + FY * (bot - top);
            const float t4 = q[4] + fx * (q[9] - q[4]);
            const float b4 = q[q1 + 4] + fx * (q[q1 + 9] - q[q1 + 4]);
            s0[x] = lo[0];
            s1[x] = lo[1];
            s2[x] = lo[2];
            s3[x] = lo[3];
            s4[x] = t4 + fy * (b4 - t4);
            hw[x] = 1.f;
        } else {
            s0[x] = s1[x] = 0.f;
            s2[x] = s3[x] = s4[x] = 0.f;
            hw[x] = 0.f;
        }
    }
    const float yscale = (y < 5 ? border[y] : 1.f) * (y >= h - 5 ? border[h - y - 1] : 1.f);
    #pragma GCC ivdep
    for (int x = xa; x < xb; ++x) {
        const float dx = fxr[x], dy = fyr[x];
        // inside: r4 = (a2+s2)/2, r6 = (a4+s4)/4; outside: r4 = a2, r6 = a4/2
        const float in = hw[x];
        const float h4 = 1.f - 0.5f * in, h6 = 0.5f - 0.25f * in;
        float r4 = a2[x] * h4 + s2[x] * 0.5f * in;
        float r5 = a3[x] * h4 + s3[x] * 0.5f * in;
        float r6 = a4[x] * h6 + s4[x] * 0.25f * in;
        float r2 = (a0[x] - s0[x]) * 0.5f;
        float r3 = (a1[x] - s1[x]) * 0.5f;
        r2 += r4 * dy + r6 * dx;
        r3 += r6 * dy + r5 * dx;
        m0[x] = r4 * r4 + r6 * r6;
        m1[x] = (r4 + r5) * r6;
        m2[x] = r5 * r5 + r6 * r6;
        m3[x] = r4 * r2 + r6 * r3;
        m4[x] = r6 * r2 + r5 * r3;
    }
    // border attenuation (OpenCV's 5-pixel frame): M is quadratic in r, so scale by s^2
    auto atten = [&](int x, float sc) {
        const float s2c = sc * sc;
        m0[x] *= s2c; m1[x] *= s2c; m2[x] *= s2c; m3[x] *= s2c; m4[x] *= s2c;
    };
    if (yscale != 1.f) {
        for (int x = xa; x < xb; ++x) {
            const float sc = (x < 5 ? border[x] : 1.f) * (x >= w - 5 ? border[w - x - 1] : 1.f) * yscale;
            atten(x, sc);
        }
    } else {
        for (int x = xa; x < std::min(xb, 5); ++x) atten(x, border[x] * (x >= w - 5 ? border[w - x - 1] : 1.f));
        for (int x = std::max(xa, std::max(5, w - 5)); x < xb; ++x)
            atten(x, border[w - x - 1] * (x < 5 ? border[x] : 1.f));
    }
    if (wt) {
        // certainty of the pixel's own image structure (0 next to the sector's edge)
        const float* wr = wt + ro;
#pragma GCC ivdep
        for (int x = xa; x < xb; ++x) {
            const float g = wr[x];
            m0[x] *= g; m1[x] *= g; m2[x] *= g; m3[x] *= g; m4[x] *= g;
        }
    }
}

// ----------------------------------------------------------------------------------------
// Iterations: window-average M (box or Gaussian), solve the 2x2 system per pixel for the
// new flow, and (unless last) recompute M from the new flow.  Work is done row by row:
//  * within an iteration, M row y-m-1 is replaced in place as soon as the window (rows
//    y-m..y+m) no longer reads it, from the flow row solved m+1 rows earlier;
//  * iterations run as a wavefront, iteration k+1 trailing iteration k by 2m+2 rows, which
//    is exactly when every M and flow row it reads has been produced by iteration k and
//    none that iteration k still reads has been overwritten.  All iterations thus work on
//    a band of rows that stays in cache instead of streaming the whole level each time.
// The result is identical to running the iterations one after the other.
// ----------------------------------------------------------------------------------------
struct IterCtx {
    const float* R0;
    const float* R1;  // interleaved (5 floats per pixel)
    float* M;
    float* fx;
    float* fy;
    int w, h, m, winsize;
    bool gaussian;
    const float* gk;  // Gaussian window, index 0..m
    const Span* span;
    const float* wt;  // per-pixel certainty plane of this level, or null
    std::size_t plane;
    int pw;  // padded row length of the window buffers
    int ylo, yhi;
    void xr(int y, int& a, int& b) const {
        if (span) {
            a = span->x0[y];
            b = span->x1[y];
        } else {
            a = 0;
            b = w;
        }
    }
};

inline void solve_row(const double* g11, const double* g12, const double* g22, const double* h1,
                      const double* h2, double scale, float* ox, float* oy, int xa, int xb) {
    for (int x = xa; x < xb; ++x) {
        double a = g11[x] * scale, b = g12[x] * scale, d = g22[x] * scale;
        double e = h1[x] * scale, f = h2[x] * scale;
        double idet = 1. / (a * d - b * b + 1e-3);
        double u = (a * f - b * e) * idet, vv = (d * e - b * f) * idet;
        ox[x] = std::isfinite(u) ? static_cast<float>(u) : 0.f;
        oy[x] = std::isfinite(vv) ? static_cast<float>(vv) : 0.f;
    }
}

void iter_row(Workspace& ws, const IterCtx& c, IterState& st, int y) {
    Timers& tm = ws.tm;
    const int w = c.w, h = c.h, m = c.m, pw = c.pw;
    const std::size_t plane = c.plane;
    float* M = c.M;
    double* hs = ws.hs.data();
    int xa, xb;
    c.xr(y, xa, xb);
    tm.start();
    if (!c.gaussian) {
        if (y == c.ylo) {
            for (int ch = 0; ch < 5; ++ch) {
                double* v = st.vsum.data() + ch * pw + (m + 1);
                const float* Mc = M + ch * plane;
                std::fill(v, v + w, 0.0);
                for (int i = -m; i <= m; ++i) {
                    const float* sr =
                        Mc + static_cast<std::size_t>(std::min(std::max(y + i, 0), h - 1)) * w;
                    for (int x = 0; x < w; ++x) v[x] += sr[x];
                }
            }
        } else {
            const int ya = std::min(y + m, h - 1), ys = std::max(y - m - 1, 0);
            const std::size_t ra = static_cast<std::size_t>(ya) * w;
            const std::size_t rs = static_cast<std::size_t>(ys) * w;
            // M is exactly 0 outside the span of its row: the sums change only over the
            // union of the spans of the row entering and the row leaving the window.
            int ua = 0, ub = w;
            if (c.span) {
                int a1, b1, a2, b2;
                c.xr(ya, a1, b1);
                c.xr(ys, a2, b2);
                if (ya < c.ylo || ya >= c.yhi) a1 = w, b1 = 0;
                if (ys < c.ylo || ys >= c.yhi) a2 = w, b2 = 0;
                ua = std::min(a1, a2);
                ub = std::max(b1, b2);
            }
            for (int ch = 0; ch < 5; ++ch) {
                double* __restrict v = st.vsum.data() + ch * pw + (m + 1);
                const float* __restrict A = M + ch * plane + ra;
                const float* __restrict S = M + ch * plane + rs;
#pragma GCC ivdep
                for (int x = ua; x < ub; ++x) v[x] += static_cast<double>(A[x]) - S[x];
            }
        }
        tm.lap(kWinVert);
        if (xa < xb) {
            double* v[5];
            double sacc[5];
            for (int ch = 0; ch < 5; ++ch) {
                v[ch] = st.vsum.data() + ch * pw + (m + 1);
                for (int i = 1; i <= m + 1; ++i) {
                    v[ch][-i] = v[ch][0];
                    v[ch][w - 1 + i] = v[ch][w - 1];
                }
                double acc = 0;
                for (int i = -m; i <= m; ++i) acc += v[ch][xa + i];
                sacc[ch] = acc;
                hs[ch * w + xa] = acc;
            }
            for (int x = xa + 1; x < xb; ++x) {
                for (int ch = 0; ch < 5; ++ch) {
                    sacc[ch] += v[ch][x + m] - v[ch][x - m - 1];
                    hs[ch * w + x] = sacc[ch];
                }
            }
            tm.lap(kWinHorz);
            const double scale = 1. / (static_cast<double>(c.winsize) * c.winsize);
            solve_row(hs, hs + w, hs + 2 * w, hs + 3 * w, hs + 4 * w, scale,
                      c.fx + static_cast<std::size_t>(y) * w,
                      c.fy + static_cast<std::size_t>(y) * w, xa, xb);
            tm.lap(kSolve);
        }
    } else if (xa < xb) {
        const int va = std::max(0, xa - m), vb = std::min(w, xb + m);
        float* vrow = ws.vsumf.data() + (m + 1);
        float* hrow = ws.hsf.data();
        const float* gk = c.gk;
        const float k0 = gk[0];
        for (int ch = 0; ch < 5; ++ch) {
            const float* Mc = M + ch * plane;
            const float* s0 = Mc + static_cast<std::size_t>(y) * w;
            float* __restrict vc = vrow;
#pragma GCC ivdep
            for (int x = va; x < vb; ++x) vc[x] = s0[x] * k0;
            for (int i = 1; i <= m; ++i) {
                const float* __restrict ar = Mc + static_cast<std::size_t>(std::max(y - i, 0)) * w;
                const float* __restrict br = Mc + static_cast<std::size_t>(std::min(y + i, h - 1)) * w;
                const float ki = gk[i];
#pragma GCC ivdep
                for (int x = va; x < vb; ++x) vc[x] += (ar[x] + br[x]) * ki;
            }
            tm.lap(kWinVert);
            for (int i = 1; i <= m; ++i) {
                vc[-i] = vc[0];
                vc[w - 1 + i] = vc[w - 1];
            }
            float* __restrict hc = hrow;
#pragma GCC ivdep
            for (int x = xa; x < xb; ++x) hc[x] = vc[x] * k0;
            for (int i = 1; i <= m; ++i) {
                const float ki = gk[i];
#pragma GCC ivdep
                for (int x = xa; x < xb; ++x) hc[x] += ki * (vc[x - i] + vc[x + i]);
            }
            double* hd = hs + ch * w;
            for (int x = xa; x < xb; ++x) hd[x] = hc[x];
            tm.lap(kWinHorz);
        }
        solve_row(hs, hs + w, hs + 2 * w, hs + 3 * w, hs + 4 * w, 1.0,
                  c.fx + static_cast<std::size_t>(y) * w, c.fy + static_cast<std::size_t>(y) * w,
                  xa, xb);
        tm.lap(kSolve);
    }
    if (st.update) {
        const int r = y - m - 1;
        if (r >= c.ylo) {
            int ra, rb;
            c.xr(r, ra, rb);
            update_matrices_row(c.R0, c.R1, c.fx, c.fy, M, w, h, r, ra, rb, ws.um.data(), c.wt);
        }
        if (y == c.yhi - 1) {
            for (int rr = std::max(c.ylo, c.yhi - m - 1); rr < c.yhi; ++rr) {
                int ra, rb;
                c.xr(rr, ra, rb);
                update_matrices_row(c.R0, c.R1, c.fx, c.fy, M, w, h, rr, ra, rb, ws.um.data(), c.wt);
            }
        }
        tm.lap(kIterMatrices);
    }
}

void iterate_all(Workspace& ws, const float* R0, const float* R1, int w, int h, int winsize,
                 bool gaussian, const std::vector<float>& gk, int iterations, const Span* span,
                 const float* wt) {
    IterCtx c;
    c.wt = wt;
    c.R0 = R0;
    c.R1 = R1;
    c.M = ws.Mp;
    c.fx = ws.fx.p;
    c.fy = ws.fy.p;
    c.w = w;
    c.h = h;
    c.m = winsize / 2;
    c.winsize = winsize;
    c.gaussian = gaussian;
    c.gk = gk.data();
    c.span = span;
    c.plane = pstride(w, h);
    c.pw = w + 2 * (c.m + 1);
    c.ylo = span ? span->y0 : 0;
    c.yhi = span ? span->y1 : h;
    if (c.ylo >= c.yhi) return;
    ws.hs.resize(5 * static_cast<std::size_t>(w));
    ws.um.resize(6 * static_cast<std::size_t>(w));
    if (gaussian) {
        ws.vsumf.resize(static_cast<std::size_t>(c.pw));
        ws.hsf.resize(static_cast<std::size_t>(w));
    }
    const int K = iterations;
    if (static_cast<int>(ws.iters.size()) < K) ws.iters.resize(K);
    for (int k = 0; k < K; ++k) {
        ws.iters[k].update = k < K - 1;
        if (!gaussian) ws.iters[k].vsum.resize(5 * static_cast<std::size_t>(c.pw));
    }
    // The initial matrices (from the initial flow) are produced just ahead of iteration 0:
    // M row r is first read by iteration 0 at row r-m (rows ylo..ylo+m at its first row).
    auto init_row = [&](int r) {
        int ra, rb;
        c.xr(r, ra, rb);
        update_matrices_row(c.R0, c.R1, c.fx, c.fy, c.M, w, h, r, ra, rb, ws.um.data(), c.wt);
    };
    ws.tm.start();
    for (int r = c.ylo; r < std::min(c.yhi, c.ylo + c.m + 1); ++r) init_row(r);
    ws.tm.stop(kMatrices);
    const long L = 2L * c.m + 2;
    const long last = c.yhi - 1 + static_cast<long>(K - 1) * L;
    for (long step = c.ylo; step <= last; ++step) {
        if (step + c.m + 1 < c.yhi && step + c.m + 1 >= c.ylo + c.m + 1) {
            ws.tm.start();
            init_row(static_cast<int>(step + c.m + 1));
            ws.tm.stop(kMatrices);
        }
        for (int k = 0; k < K; ++k) {
            const long y = step - k * L;
            if (y < c.ylo || y >= c.yhi) continue;
            iter_row(ws, c, ws.iters[k], static_cast<int>(y));
        }
    }
}

// Bilinear resize of one float plane (pixel-centre convention, clamped border) times `mul`.
void resize_plane(const float* src, int sw, int sh, float* dst, int dw, int dh, float mul) {
    const double sx = static_cast<double>(sw) / dw, sy = static_cast<double>(sh) / dh;
    std::vector<int> xi(dw);
    std::vector<float> xf(dw), hr[2] = {std::vector<float>(dw), std::vector<float>(dw)};
    int hidx[2] = {-1, -1};
    for (int i = 0; i < dw; ++i) {
        float f = static_cast<float>((i + 0.5) * sx - 0.5);
        int s0 = static_cast<int>(std::floor(f));
        f -= s0;
        if (s0 < 0) { s0 = 0; f = 0; }
        if (s0 >= sw - 1) { s0 = sw - 1; f = 0; }
        xi[i] = s0;
        xf[i] = f;
    }
    auto hrow = [&](int r) -> const float* {
        for (int q = 0; q < 2; ++q)
            if (hidx[q] == r) return hr[q].data();
        const int q = hidx[0] <= hidx[1] ? 0 : 1;  // rows come in increasing order
        const float* a = src + static_cast<std::size_t>(r) * sw;
        float* o = hr[q].data();
        for (int i = 0; i < dw; ++i) {
            const int x0 = xi[i], x1 = std::min(x0 + 1, sw - 1);
            o[i] = a[x0] * (1.f - xf[i]) + a[x1] * xf[i];
        }
        hidx[q] = r;
        return o;
    };
    for (int j = 0; j < dh; ++j) {
        float f = static_cast<float>((j + 0.5) * sy - 0.5);
        int s0 = static_cast<int>(std::floor(f));
        f -= s0;
        const int r0 = std::min(std::max(s0, 0), sh - 1), r1 = std::min(std::max(s0 + 1, 0), sh - 1);
        const float* ta = hrow(r0);
        const float* tb = hrow(r1);
        float* o = dst + static_cast<std::size_t>(j) * dw;
        const float wa = 1.f - f;
        for (int i = 0; i < dw; ++i) o[i] = (ta[i] * wa + tb[i] * f) * mul;
    }
}

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

void load_frame(const Job& job, int t, Workspace& ws) {
    const std::size_t n = static_cast<std::size_t>(job.H) * job.W;
    ws.fimg.resize(n);
    if (job.is_u8) {
        const std::uint8_t* s = static_cast<const std::uint8_t*>(job.frames) + n * t;
        for (std::size_t i = 0; i < n; ++i) ws.fimg[i] = s[i];
    } else {
        const float* s = static_cast<const float*>(job.frames) + n * t;
        std::memcpy(ws.fimg.data(), s, n * sizeof(float));
    }
}

void expand_frame(const Job& job, int t, Workspace& ws, std::vector<FBuf>& R, int off,
                  bool interleave) {
    ws.tm.start();
    load_frame(job, t, ws);
    ws.tm.stop(kPyramid);
    const int nl = static_cast<int>(job.levels.size());
    R.resize(nl);
    for (int k = 0; k < nl; ++k) {
        const Level& L = job.levels[k];
        const Span* sp = job.spans.empty() ? nullptr : &job.spans[k];
        ws.tm.start();
        build_level(ws, job.W, job.H, L);
        ws.tm.stop(kPyramid);
        ws.tm.start();
        R[k].alloc(5 * pstride(L.w, L.h), off);
        poly_exp(ws, ws.limg.data(), L.w, L.h, job.pc, R[k].p, sp);
        if (interleave) {
            ws.R1i.resize(nl);
            ws.R1i[k].alloc(5 * static_cast<std::size_t>(L.w) * L.h + 8, 40);
            interleave5(R[k].p, L.w, L.h, ws.R1i[k].p, sp ? sp->y0 : 0, sp ? sp->y1 : L.h);
        }
        ws.tm.stop(kPolyExp);
    }
}

void flow_pair(const Job& job, int t, Workspace& ws) {
    const int nl = static_cast<int>(job.levels.size());
    for (int k = nl - 1; k >= 0; --k) {
        const Level& L = job.levels[k];
        const std::size_t n = static_cast<std::size_t>(L.w) * L.h;
        const Span* sp = job.spans.empty() ? nullptr : &job.spans[k];
        ws.tm.start();
        ws.fx.alloc(n, kOffFx);
        ws.fy.alloc(n, kOffFy);
        if (k == nl - 1) {
            std::fill(ws.fx.p, ws.fx.p + n, 0.f);
            std::fill(ws.fy.p, ws.fy.p + n, 0.f);
        } else {
            const Level& P = job.levels[k + 1];
            const float mul = static_cast<float>(1. / job.p.pyr_scale);
            resize_plane(ws.pfx.p, P.w, P.h, ws.fx.p, L.w, L.h, mul);
            resize_plane(ws.pfy.p, P.w, P.h, ws.fy.p, L.w, L.h, mul);
        }
        ws.tm.stop(kUpsample);
        ws.tm.start();
        const std::size_t ps = pstride(L.w, L.h);
        ws.Ml.resize(nl);
        ws.Ml[k].alloc(5 * ps, kOffM);  // zeroed at allocation; outside the span never written
        ws.Mp = ws.Ml[k].p;
        const float* R0 = ws.Ra[k].p;
        const float* R1 = ws.R1i[k].p;  // interleaved
        ws.tm.stop(kMatrices);
        iterate_all(ws, R0, R1, L.w, L.h, job.p.winsize, job.p.gaussian, job.gwin,
                    job.p.iterations, sp, job.wts.empty() ? nullptr : job.wts[k].data());
        if (sp) {
            // flow outside the span is 0 (not the upsampled flow of the coarser level)
            for (int y = 0; y < L.h; ++y) {
                float* rx = ws.fx.p + static_cast<std::size_t>(y) * L.w;
                float* ry = ws.fy.p + static_cast<std::size_t>(y) * L.w;
                int a = sp->x0[y], b = sp->x1[y];
                if (y < sp->y0 || y >= sp->y1 || a >= b) a = b = L.w;
                std::fill(rx, rx + a, 0.f);
                std::fill(ry, ry + a, 0.f);
                std::fill(rx + b, rx + L.w, 0.f);
                std::fill(ry + b, ry + L.w, 0.f);
            }
        }
        if (k > 0) {
            std::swap(ws.fx, ws.pfx);
            std::swap(ws.fy, ws.pfy);
        }
    }
    // interleave (dx, dy) into the output; zero outside the mask
    ws.tm.start();
    const std::size_t n = static_cast<std::size_t>(job.H) * job.W;
    float* o = job.out + 2 * n * t;
    const float* fx = ws.fx.p;
    const float* fy = ws.fy.p;
    if (job.mask) {
        for (std::size_t i = 0; i < n; ++i) {
            const bool in = job.mask[i] != 0;
            o[2 * i] = in ? fx[i] : 0.f;
            o[2 * i + 1] = in ? fy[i] : 0.f;
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            o[2 * i] = fx[i];
            o[2 * i + 1] = fy[i];
        }
    }
    ws.tm.stop(kOutput);
}

// Row spans of the mask dilated by `rad` px at level k (scaled), plus a row range.
Span make_span(const std::uint8_t* mask, int W, int H, const Level& L, int rad) {
    Span s;
    s.x0.assign(L.h, L.w);
    s.x1.assign(L.h, 0);
    // per full-resolution row: extent of the mask
    std::vector<int> fx0(H, W), fx1(H, 0);
    for (int y = 0; y < H; ++y) {
        const std::uint8_t* r = mask + static_cast<std::size_t>(y) * W;
        int a = 0;
        while (a < W && !r[a]) ++a;
        int b = W;
        while (b > a && !r[b - 1]) --b;
        if (a < b) {
            fx0[y] = a;
            fx1[y] = b;
        }
    }
    const double sx = static_cast<double>(L.w) / W, sy = static_cast<double>(L.h) / H;
    for (int y = 0; y < H; ++y) {
        if (fx0[y] >= fx1[y]) continue;
        int ly0 = static_cast<int>(std::floor(y * sy)) - rad;
        int ly1 = static_cast<int>(std::floor((y + 1) * sy)) + rad + 1;
        int lx0 = static_cast<int>(std::floor(fx0[y] * sx)) - rad;
        int lx1 = static_cast<int>(std::ceil(fx1[y] * sx)) + rad + 1;
        ly0 = std::max(ly0, 0);
        ly1 = std::min(ly1, L.h);
        lx0 = std::max(lx0, 0);
        lx1 = std::min(lx1, L.w);
        for (int ly = ly0; ly < ly1; ++ly) {
            s.x0[ly] = std::min(s.x0[ly], lx0);
            s.x1[ly] = std::max(s.x1[ly], lx1);
        }
    }
    s.y0 = L.h;
    s.y1 = 0;
    for (int ly = 0; ly < L.h; ++ly)
        if (s.x0[ly] < s.x1[ly]) {
            s.y0 = std::min(s.y0, ly);
            s.y1 = ly + 1;
        }
    if (s.y0 >= s.y1) s.y0 = s.y1 = 0;
    return s;
}

// Certainty plane of level L: 1 where every level pixel within `r` (Chebyshev distance) lies
// inside the mask, else 0 (pixels beyond the image border do not count: OpenCV's own border
// attenuation handles those, and an all-true mask changes nothing).  The sector's edge is a
// bright-to-black step that does not move with the tissue; the polynomial expansion of the
// pixels next to it describes that edge, and left in the window sums it pulls the flow of
// the tissue nearby toward zero.
std::vector<float> make_certainty(const std::uint8_t* mask, int W, int H, const Level& L, int r) {
    const int w = L.w, h = L.h;
    const double sx = static_cast<double>(W) / w, sy = static_cast<double>(H) / h;
    std::vector<std::uint8_t> lm(static_cast<std::size_t>(w) * h), tmp(lm.size());
    for (int y = 0; y < h; ++y) {
        const int fy = std::min(H - 1, std::max(0, static_cast<int>(std::floor((y + 0.5) * sy))));
        for (int x = 0; x < w; ++x) {
            const int fx = std::min(W - 1, std::max(0, static_cast<int>(std::floor((x + 0.5) * sx))));
            lm[static_cast<std::size_t>(y) * w + x] = mask[static_cast<std::size_t>(fy) * W + fx] != 0;
        }
    }
    // separable erosion by running counts of outside pixels (O(1) per pixel and pass)
    std::vector<int> cnt(static_cast<std::size_t>(std::max(w, h)) + 1);
    auto erode_line = [&](auto get, auto put, int n) {
        cnt[0] = 0;
        for (int i = 0; i < n; ++i) cnt[i + 1] = cnt[i] + (get(i) ? 0 : 1);
        for (int i = 0; i < n; ++i) {
            const int a = std::max(0, i - r), b = std::min(n, i + r + 1);
            put(i, cnt[b] - cnt[a] == 0);
        }
    };
    for (int y = 0; y < h; ++y) {
        const std::uint8_t* src = lm.data() + static_cast<std::size_t>(y) * w;
        std::uint8_t* dst = tmp.data() + static_cast<std::size_t>(y) * w;
        erode_line([&](int i) { return src[i] != 0; }, [&](int i, bool v) { dst[i] = v; }, w);
    }
    std::vector<float> out(static_cast<std::size_t>(w) * h);
    for (int x = 0; x < w; ++x)
        erode_line([&](int i) { return tmp[static_cast<std::size_t>(i) * w + x] != 0; },
                   [&](int i, bool v) { out[static_cast<std::size_t>(i) * w + x] = v ? 1.f : 0.f; }, h);
    return out;
}

std::string dtype_str(const py::array& a) { return std::string(py::str(a.dtype())); }

py::object dense_flow_farneback(const py::array& frames, double pyr_scale, int levels,
                                int winsize, int iterations, int poly_n, double poly_sigma,
                                bool gaussian, const py::object& mask_obj, int threads,
                                bool profile, bool skip_blank, int edge_margin) {
    // ---- validation before touching memory
    const char kind = frames.dtype().kind();
    const bool is_u8 = kind == 'u' && frames.itemsize() == 1;
    const bool is_f32 = kind == 'f' && frames.itemsize() == 4;
    if (!is_u8 && !is_f32)
        throw py::value_error("frames must be uint8 or float32, got dtype " + dtype_str(frames));
    if (frames.ndim() != 3)
        throw py::value_error("frames must have shape [T,H,W], got ndim=" +
                              std::to_string(frames.ndim()));
    if (!(frames.flags() & py::array::c_style))
        throw py::value_error("frames must be C-contiguous");
    const py::ssize_t T = frames.shape(0), H = frames.shape(1), W = frames.shape(2);
    if (T < 2) throw py::value_error("need at least 2 frames, got T=" + std::to_string(T));
    if (!(poly_n == 5 || poly_n == 7))
        throw py::value_error("poly_n must be 5 or 7, got " + std::to_string(poly_n));
    const py::ssize_t min_side = 2 * poly_n + 1;
    if (H < min_side || W < min_side)
        throw py::value_error("frames of " + std::to_string(H) + "x" + std::to_string(W) +
                              " are smaller than the polynomial filter (" +
                              std::to_string(min_side) + " px)");
    if (H > 8192 || W > 8192 || T > 1000000)
        throw py::value_error("frames too large (at most 8192x8192 px)");
    if (!(pyr_scale > 0 && pyr_scale < 1))
        throw py::value_error("pyr_scale must be in (0, 1)");
    if (levels < 1 || levels > 32) throw py::value_error("levels must be in 1..32");
    if (winsize < 1 || winsize > 255 || winsize % 2 == 0)
        throw py::value_error("winsize must be odd and in 1..255, got " +
                              std::to_string(winsize));
    if (iterations < 1 || iterations > 1000)
        throw py::value_error("iterations must be in 1..1000");
    if (!(poly_sigma > 0 && poly_sigma <= 10))
        throw py::value_error("poly_sigma must be in (0, 10]");
    if (threads < 0 || threads > 1024) throw py::value_error("threads must be in 0..1024");
    if (edge_margin < 0 || edge_margin > 64) throw py::value_error("edge_margin must be in 0..64");
    const std::uint8_t* mask = nullptr;
    py::array mask_arr;
    if (!mask_obj.is_none()) {
        if (!py::isinstance<py::array>(mask_obj))
            throw py::value_error("mask must be a numpy bool array [H,W] or None");
        mask_arr = py::reinterpret_borrow<py::array>(mask_obj);
        const char mk = mask_arr.dtype().kind();
        if (!((mk == 'b' || mk == 'u') && mask_arr.itemsize() == 1))
            throw py::value_error("mask must be bool or uint8, got dtype " + dtype_str(mask_arr));
        if (mask_arr.ndim() != 2 || mask_arr.shape(0) != H || mask_arr.shape(1) != W)
            throw py::value_error("mask must have shape [H,W] = [" + std::to_string(H) + "," +
                                  std::to_string(W) + "]");
        if (!(mask_arr.flags() & py::array::c_style))
            throw py::value_error("mask must be C-contiguous");
        mask = static_cast<const std::uint8_t*>(mask_arr.data());
    }

    Job job;
    job.frames = frames.data();
    job.is_u8 = is_u8;
    job.T = static_cast<int>(T);
    job.H = static_cast<int>(H);
    job.W = static_cast<int>(W);
    job.p = Params{pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, gaussian};
    job.mask = mask;

    if (is_f32) {
        // finite, bounded intensities only (checked without the GIL)
        const float* s = static_cast<const float*>(job.frames);
        const std::size_t n = static_cast<std::size_t>(T) * H * W;
        bool ok = true;
        {
            py::gil_scoped_release rel;
            for (std::size_t i = 0; i < n; ++i) {
                float v = s[i];
                if (!(v >= -65536.f && v <= 65536.f)) {  // also false for NaN
                    ok = false;
                    break;
                }
            }
        }
        if (!ok)
            throw py::value_error(
                "float frames must be finite intensities within [-65536, 65536]");
    }

    job.levels = make_levels(job.W, job.H, job.p);
    job.pc = make_poly_consts(poly_n, poly_sigma);
    {
        const int m = winsize / 2;
        double sigma = m * 0.3, s = 1;
        job.gwin.assign(m + 1, 0.f);
        job.gwin[0] = 1.f;
        for (int i = 1; i <= m; ++i) {
            float t = static_cast<float>(std::exp(-i * i / (2 * sigma * sigma)));
            job.gwin[i] = t;
            s += t * 2;
        }
        s = 1. / s;
        for (int i = 0; i <= m; ++i) job.gwin[i] = static_cast<float>(job.gwin[i] * s);
    }
    if (mask) {
        // dilation margin: window half-size plus poly support plus the flow range
        const int rad = winsize / 2 + poly_n + 4;
        for (const Level& L : job.levels)
            job.spans.push_back(make_span(mask, job.W, job.H, L, rad));
        if (edge_margin > 0)
            for (const Level& L : job.levels)
                job.wts.push_back(make_certainty(mask, job.W, job.H, L, edge_margin));
    } else if (skip_blank) {
        // Echo frames are black (exactly 0) outside the sector and often in the cavity.
        // Far from any non-zero pixel of any frame the polynomial expansion, the matrices
        // and hence the flow are exactly 0 in OpenCV too; work is restricted to the
        // non-zero content of the clip dilated by two windows, the filter supports and a
        // margin of 2 px per iteration.
        std::vector<std::uint8_t> content(static_cast<std::size_t>(H) * W, 0);
        {
            py::gil_scoped_release rel;
            const std::size_t n = content.size();
            for (int t = 0; t < job.T; ++t) {
                if (is_u8) {
                    const std::uint8_t* f = static_cast<const std::uint8_t*>(job.frames) + n * t;
                    for (std::size_t i = 0; i < n; ++i) content[i] |= (f[i] != 0);
                } else {
                    const float* f = static_cast<const float*>(job.frames) + n * t;
                    for (std::size_t i = 0; i < n; ++i) content[i] |= (f[i] != 0.f);
                }
            }
        }
        // Margin: each iteration can move the non-zero region of M by about one flow
        // vector and that of the flow by one window; the margin covers flows of
        // the size found next to echo tissue (checked against the full computation in the
        // tests: identical results).
        const int rad = 2 * (winsize / 2) + 2 * poly_n + 10 + 2 * iterations;
        std::vector<Span> sp;
        for (const Level& L : job.levels) sp.push_back(make_span(content.data(), job.W, job.H, L, rad));
        std::size_t area = 0;
        for (int y = sp[0].y0; y < sp[0].y1; ++y)
            area += static_cast<std::size_t>(std::max(0, sp[0].x1[y] - sp[0].x0[y]));
        if (area < static_cast<std::size_t>(0.9 * static_cast<double>(H) * W)) job.spans = std::move(sp);
    }

    py::array_t<float> out({T - 1, H, W, static_cast<py::ssize_t>(2)});
    job.out = out.mutable_data();

    const int npairs = job.T - 1;
    const int nt = std::max(1, std::min(ttsfast::resolve_threads(threads), npairs));
    std::vector<Workspace> ws(nt);
    for (auto& w : ws) w.tm.on = profile;
    std::vector<std::exception_ptr> errs(nt);
    {
        py::gil_scoped_release rel;
        // Pairs are handed out in contiguous segments of decreasing size (guided
        // scheduling), so that a thread slowed down by other load does not hold the others
        // up at the end; each segment expands its first frame once more.
        std::mutex sched;
        int next_pair = 0;
        bool failed = false;
        auto grab = [&](int& p0, int& p1) {
            std::lock_guard<std::mutex> lk(sched);
            const int rem = npairs - next_pair;
            if (rem <= 0 || failed) return false;
            const int sz = nt == 1 ? rem : std::min(rem, std::max(3, rem / (2 * nt)));
            p0 = next_pair;
            p1 = next_pair + sz;
            next_pair = p1;
            return true;
        };
        auto worker = [&](int i) {
            try {
                Workspace& w = ws[i];
                int p0, p1;
                while (grab(p0, p1)) {
                    expand_frame(job, p0, w, w.Ra, kOffRa, false);
                    for (int t = p0; t < p1; ++t) {
                        // alternate which buffer holds frame t so that no copy is needed
                        expand_frame(job, t + 1, w, w.Rb, kOffRb, true);
                        flow_pair(job, t, w);
                        std::swap(w.Ra, w.Rb);
                    }
                }
            } catch (...) {
                errs[i] = std::current_exception();
                std::lock_guard<std::mutex> lk(sched);
                failed = true;  // stop the others early
            }
        };
        std::vector<std::thread> pool;
        for (int i = 1; i < nt; ++i) pool.emplace_back(worker, i);
        worker(0);
        for (auto& th : pool) th.join();
    }
    for (auto& e : errs)
        if (e) std::rethrow_exception(e);
    if (!profile) return std::move(out);
    py::dict prof;
    for (int s = 0; s < kNumSteps; ++s) {
        double tot = 0;
        for (auto& w : ws) tot += w.tm.t[s];
        prof[kStepNames[s]] = tot;
    }
    prof["threads"] = nt;
    prof["levels_used"] = static_cast<int>(job.levels.size());
    double frac = 1.0;
    if (!job.spans.empty()) {
        const Span& s0 = job.spans[0];
        double area = 0;
        for (int y = s0.y0; y < s0.y1; ++y) area += std::max(0, s0.x1[y] - s0.x0[y]);
        frac = area / (static_cast<double>(H) * W);
    }
    prof["computed_fraction"] = frac;
    return py::make_tuple(out, prof);
}

py::list farneback_levels(int H, int W, double pyr_scale, int levels) {
    if (H < 1 || W < 1 || !(pyr_scale > 0 && pyr_scale < 1) || levels < 1 || levels > 32)
        throw py::value_error("invalid size or pyramid parameters");
    Params p{pyr_scale, levels, 1, 1, 5, 1.1, false};
    py::list l;
    for (const Level& L : make_levels(W, H, p)) l.append(py::make_tuple(L.h, L.w));
    return l;
}

}  // namespace

void register_flow(py::module_& m) {
    m.def("dense_flow_farneback", &dense_flow_farneback, py::arg("frames"),
          py::arg("pyr_scale"), py::arg("levels"), py::arg("winsize"), py::arg("iterations"),
          py::arg("poly_n"), py::arg("poly_sigma"), py::arg("gaussian"),
          py::arg("mask") = py::none(), py::arg("threads") = 0, py::arg("profile") = false,
          py::arg("skip_blank") = true, py::arg("edge_margin") = 0,
          "Farneback dense flow of every consecutive pair of a uint8/float32 [T,H,W] clip; "
          "returns float32 [T-1,H,W,2] (dx, dy) px/frame, or (flow, step timings) when "
          "profile=True.");
    m.def("farneback_levels", &farneback_levels, py::arg("height"), py::arg("width"),
          py::arg("pyr_scale"), py::arg("levels"),
          "Sizes (h, w) of the pyramid layers used, finest first.");
}
