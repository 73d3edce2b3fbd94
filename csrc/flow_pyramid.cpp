// Pyramid construction, polynomial expansion and the per-frame expansion of flow (one of
// the hot kernel files compiled once per instruction set, see flow_kernels.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "flow_kernels.hpp"

namespace ttsfast {
namespace flow {
namespace TTSFAST_ISA_NS {

namespace {

inline int reflect101(int p, int len) {
    if (len == 1) return 0;
    while (p < 0 || p >= len) p = p < 0 ? -p : 2 * len - 2 - p;
    return p;
}

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
    const double sy = static_cast<double>(H) / L.h;
    std::vector<int> xi;
    std::vector<float> xf;
    bilinear_taps(W, L.w, xi, xf);
    for (int j = 0; j < L.h; ++j) {
        int r0, r1;
        const float f = bilinear_rows(j, sy, H, r0, r1);
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

}  // namespace

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

}  // namespace TTSFAST_ISA_NS
}  // namespace flow
}  // namespace ttsfast
