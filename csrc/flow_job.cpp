// Per-call setup of a flow job: pyramid levels, polynomial expansion constants, windows, and
// the spans / certainty planes that restrict the work to the sector mask or to the non-zero
// content of the clip.
#include <algorithm>
#include <cmath>
#include <utility>

#include "flow_internal.hpp"

namespace ttsfast {
namespace flow {

namespace {

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

}  // namespace

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

namespace {

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

// Gaussian window of the flow solve (half, index 0..winsize/2), normalised.
std::vector<float> gaussian_window(int winsize) {
    const int m = winsize / 2;
    double sigma = m * 0.3, s = 1;
    std::vector<float> g(m + 1, 0.f);
    g[0] = 1.f;
    for (int i = 1; i <= m; ++i) {
        float t = static_cast<float>(std::exp(-i * i / (2 * sigma * sigma)));
        g[i] = t;
        s += t * 2;
    }
    s = 1. / s;
    for (int i = 0; i <= m; ++i) g[i] = static_cast<float>(g[i] * s);
    return g;
}

// Pixels that are non-zero in any frame of the clip.
std::vector<std::uint8_t> clip_content(const Job& job) {
    std::vector<std::uint8_t> content(static_cast<std::size_t>(job.H) * job.W, 0);
    const std::size_t n = content.size();
    for (int t = 0; t < job.T; ++t) {
        if (job.is_u8) {
            const std::uint8_t* f = static_cast<const std::uint8_t*>(job.frames) + n * t;
            for (std::size_t i = 0; i < n; ++i) content[i] |= (f[i] != 0);
        } else {
            const float* f = static_cast<const float*>(job.frames) + n * t;
            for (std::size_t i = 0; i < n; ++i) content[i] |= (f[i] != 0.f);
        }
    }
    return content;
}

// Echo frames are black (exactly 0) outside the sector and often in the cavity. Far from
// any non-zero pixel of any frame the polynomial expansion, the matrices and hence the flow
// are exactly 0 in OpenCV too; work is restricted to the non-zero content of the clip
// dilated by two windows, the filter supports and a margin of 2 px per iteration (unless
// that leaves 90 % of the frame or more).
void content_spans(Job& job) {
    const std::vector<std::uint8_t> content = clip_content(job);
    // Margin: each iteration can move the non-zero region of M by about one flow vector and
    // that of the flow by one window; the margin covers flows of the size found next to echo
    // tissue (checked against the full computation in the tests: identical results).
    const int rad = 2 * (job.p.winsize / 2) + 2 * job.p.poly_n + 10 + 2 * job.p.iterations;
    std::vector<Span> sp;
    for (const Level& L : job.levels) sp.push_back(make_span(content.data(), job.W, job.H, L, rad));
    std::size_t area = 0;
    for (int y = sp[0].y0; y < sp[0].y1; ++y)
        area += static_cast<std::size_t>(std::max(0, sp[0].x1[y] - sp[0].x0[y]));
    if (area < static_cast<std::size_t>(0.9 * static_cast<double>(job.H) * job.W)) job.spans = std::move(sp);
}

}  // namespace

void prepare_job(Job& job, bool skip_blank, int edge_margin) {
    job.levels = make_levels(job.W, job.H, job.p);
    job.pc = make_poly_consts(job.p.poly_n, job.p.poly_sigma);
    job.gwin = gaussian_window(job.p.winsize);
    if (job.mask) {
        // dilation margin: window half-size plus poly support plus the flow range
        const int rad = job.p.winsize / 2 + job.p.poly_n + 4;
        for (const Level& L : job.levels)
            job.spans.push_back(make_span(job.mask, job.W, job.H, L, rad));
        if (edge_margin > 0)
            for (const Level& L : job.levels)
                job.wts.push_back(make_certainty(job.mask, job.W, job.H, L, edge_margin));
    } else if (skip_blank) {
        content_spans(job);
    }
}

std::vector<double> workspace_key(const Job& job) {
    const Params& p = job.p;
    std::vector<double> k = {static_cast<double>(job.W), static_cast<double>(job.H), p.pyr_scale,
                             static_cast<double>(p.levels), static_cast<double>(p.winsize),
                             static_cast<double>(p.iterations), static_cast<double>(p.poly_n),
                             p.poly_sigma, p.gaussian ? 1. : 0., static_cast<double>(job.levels.size()),
                             static_cast<double>(job.spans.size())};
    for (const Span& s : job.spans) {
        k.push_back(s.y0);
        k.push_back(s.y1);
        k.insert(k.end(), s.x0.begin(), s.x0.end());
        k.insert(k.end(), s.x1.begin(), s.x1.end());
    }
    return k;
}

double computed_fraction(const Job& job) {
    if (job.spans.empty()) return 1.0;
    const Span& s0 = job.spans[0];
    double area = 0;
    for (int y = s0.y0; y < s0.y1; ++y) area += std::max(0, s0.x1[y] - s0.x0[y]);
    return area / (static_cast<double>(job.H) * job.W);
}

}  // namespace flow
}  // namespace ttsfast
