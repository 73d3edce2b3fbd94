// Matrix update, window/solve iterations and the coarse-to-fine driver of one frame pair
// (one of the hot kernel files compiled once per instruction set, see flow_kernels.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "flow_kernels.hpp"

namespace ttsfast {
namespace flow {
namespace TTSFAST_ISA_NS {

namespace {

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

const float kBorder[5] = {0.14f, 0.14f, 0.4472f, 0.4472f, 0.4472f};  // OpenCV's border weights

// Border attenuation (OpenCV's 5-pixel frame) and certainty weight (row wr, or null) of
// one M row; M is quadratic in r, so the attenuation scales by s^2.
void weight_row(float* m0, float* m1, float* m2, float* m3, float* m4, int w, int xa, int xb,
                float yscale, const float* wr) {
    auto atten = [&](int x, float sc) {
        const float s2c = sc * sc;
        m0[x] *= s2c; m1[x] *= s2c; m2[x] *= s2c; m3[x] *= s2c; m4[x] *= s2c;
    };
    if (yscale != 1.f) {
        for (int x = xa; x < xb; ++x) {
            const float sc = (x < 5 ? kBorder[x] : 1.f) * (x >= w - 5 ? kBorder[w - x - 1] : 1.f) * yscale;
            atten(x, sc);
        }
    } else {
        for (int x = xa; x < std::min(xb, 5); ++x) atten(x, kBorder[x] * (x >= w - 5 ? kBorder[w - x - 1] : 1.f));
        for (int x = std::max(xa, std::max(5, w - 5)); x < xb; ++x)
            atten(x, kBorder[w - x - 1] * (x < 5 ? kBorder[x] : 1.f));
    }
    if (wr) {
        // certainty of the pixel's own image structure (0 next to the sector's edge)
#pragma GCC ivdep
        for (int x = xa; x < xb; ++x) {
            const float g = wr[x];
            m0[x] *= g; m1[x] *= g; m2[x] *= g; m3[x] *= g; m4[x] *= g;
        }
    }
}

void update_matrices_row(const float* R0, const float* R1i, const float* fxp, const float* fyp,
                         float* M, int w, int h, int y, int xa, int xb, float* scratch,
                         const float* wt) {
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
    float* sv = scratch;  // s0..s3 interleaved, 4 floats per pixel
    float* s4 = sv + 4 * static_cast<std::size_t>(w);
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
            std::memcpy(sv + 4 * x, &lo, sizeof(lo));
            s4[x] = t4 + fy * (b4 - t4);
            hw[x] = 1.f;
        } else {
            const v4sf z = {0.f, 0.f, 0.f, 0.f};
            std::memcpy(sv + 4 * x, &z, sizeof(z));
            s4[x] = 0.f;
            hw[x] = 0.f;
        }
    }
    const float yscale = (y < 5 ? kBorder[y] : 1.f) * (y >= h - 5 ? kBorder[h - y - 1] : 1.f);
    #pragma GCC ivdep
    for (int x = xa; x < xb; ++x) {
        const float dx = fxr[x], dy = fyr[x];
        // inside: r4 = (a2+s2)/2, r6 = (a4+s4)/4; outside: r4 = a2, r6 = a4/2
        const float in = hw[x];
        const float h4 = 1.f - 0.5f * in, h6 = 0.5f - 0.25f * in;
        const float* sx = sv + 4 * x;
        float r4 = a2[x] * h4 + sx[2] * 0.5f * in;
        float r5 = a3[x] * h4 + sx[3] * 0.5f * in;
        float r6 = a4[x] * h6 + s4[x] * 0.25f * in;
        float r2 = (a0[x] - sx[0]) * 0.5f;
        float r3 = (a1[x] - sx[1]) * 0.5f;
        r2 += r4 * dy + r6 * dx;
        r3 += r6 * dy + r5 * dx;
        m0[x] = r4 * r4 + r6 * r6;
        m1[x] = (r4 + r5) * r6;
        m2[x] = r5 * r5 + r6 * r6;
        m3[x] = r4 * r2 + r6 * r3;
        m4[x] = r6 * r2 + r5 * r3;
    }
    weight_row(m0, m1, m2, m3, m4, w, xa, xb, yscale, wt ? wt + ro : nullptr);
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

// Box window, vertical part: running sums of the M rows y-m..y+m (clamped) in st.vsum.
void box_vsum(const IterCtx& c, IterState& st, int y) {
    const int w = c.w, h = c.h, m = c.m, pw = c.pw;
    const std::size_t plane = c.plane;
    float* M = c.M;
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
}

// Box window, horizontal part over [xa, xb), and the solve of row y.  Not inlined (nor is
// gaussian_solve): their 5-channel loops then get registers of their own, fewer spills.
__attribute__((noinline)) void box_hsum_solve(Workspace& ws, const IterCtx& c, IterState& st,
                                              int y, int xa, int xb) {
    Timers& tm = ws.tm;
    const int w = c.w, m = c.m, pw = c.pw;
    double* hs = ws.hs.data();
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

// Gaussian window over [xa, xb) and the solve of row y.
__attribute__((noinline)) void gaussian_solve(Workspace& ws, const IterCtx& c, int y, int xa,
                                              int xb) {
    Timers& tm = ws.tm;
    const int w = c.w, h = c.h, m = c.m;
    const std::size_t plane = c.plane;
    float* M = c.M;
    double* hs = ws.hs.data();
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

// Replace the M rows the window of row y no longer reads (all remaining ones after the last
// row) from the new flow.
void update_behind(Workspace& ws, const IterCtx& c, int y) {
    const int w = c.w, h = c.h, m = c.m;
    float* M = c.M;
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
    ws.tm.lap(kIterMatrices);
}

void iter_row(Workspace& ws, const IterCtx& c, IterState& st, int y) {
    int xa, xb;
    c.xr(y, xa, xb);
    ws.tm.start();
    if (!c.gaussian) {
        box_vsum(c, st, y);
        ws.tm.lap(kWinVert);
        if (xa < xb) box_hsum_solve(ws, c, st, y, xa, xb);
    } else if (xa < xb) {
        gaussian_solve(ws, c, y, xa, xb);
    }
    if (st.update) update_behind(ws, c, y);
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
    ws.um.resize(6 * static_cast<std::size_t>(w));  // s0..s3 interleaved, s4, hw
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
    const double sy = static_cast<double>(sh) / dh;
    std::vector<int> xi;
    std::vector<float> xf, hr[2] = {std::vector<float>(dw), std::vector<float>(dw)};
    int hidx[2] = {-1, -1};
    bilinear_taps(sw, dw, xi, xf);
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
        int r0, r1;
        const float f = bilinear_rows(j, sy, sh, r0, r1);
        const float* ta = hrow(r0);
        const float* tb = hrow(r1);
        float* o = dst + static_cast<std::size_t>(j) * dw;
        const float wa = 1.f - f;
        for (int i = 0; i < dw; ++i) o[i] = (ta[i] * wa + tb[i] * f) * mul;
    }
}

// Initial flow of level k: 0 on the coarsest level, else the flow of level k+1 upsampled.
void init_level_flow(const Job& job, int k, Workspace& ws) {
    const int nl = static_cast<int>(job.levels.size());
    const Level& L = job.levels[k];
    const std::size_t n = static_cast<std::size_t>(L.w) * L.h;
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
}

// Flow outside the span is 0 (not the upsampled flow of the coarser level).
void zero_outside_span(const Level& L, const Span* sp, Workspace& ws) {
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

// Interleave (dx, dy) of the finest level into the output of pair t; zero outside the mask.
void write_output(const Job& job, int t, const Workspace& ws) {
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
}

}  // namespace

void flow_pair(const Job& job, int t, Workspace& ws) {
    const int nl = static_cast<int>(job.levels.size());
    for (int k = nl - 1; k >= 0; --k) {
        const Level& L = job.levels[k];
        const Span* sp = job.spans.empty() ? nullptr : &job.spans[k];
        ws.tm.start();
        init_level_flow(job, k, ws);
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
        if (sp) zero_outside_span(L, sp, ws);
        if (k > 0) {
            std::swap(ws.fx, ws.pfx);
            std::swap(ws.fy, ws.pfy);
        }
    }
    ws.tm.start();
    write_output(job, t, ws);
    ws.tm.stop(kOutput);
}

// This copy's entry points (flow_internal.hpp), for flow_isa.cpp to choose from.
extern const Kernels kernels = {&expand_frame, &flow_pair};

}  // namespace TTSFAST_ISA_NS
}  // namespace flow
}  // namespace ttsfast
