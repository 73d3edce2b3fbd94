// Preprocessing kernels: per-pixel temporal statistics of a uint8 clip (used to find the
// moving ultrasound sector) and bilinear crop+resize of a whole clip to the analysis grid.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"

namespace py = pybind11;

// Hot loops are compiled twice (AVX2 and baseline x86-64) and picked at load time, so that
// wheels stay portable while modern CPUs get 32-byte vectors.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TTSFAST_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define TTSFAST_MULTIVERSION
#endif
#if defined(__GNUC__)
#define TTSFAST_FORCE_INLINE inline __attribute__((always_inline))
#else
#define TTSFAST_FORCE_INLINE inline
#endif

using ttsfast::parallel_bands;
using ttsfast::resolve_threads;

namespace {

using U8Array = py::array_t<std::uint8_t, py::array::c_style>;

void require_3d_u8(const py::array& a, const char* name) {
    if (a.dtype().kind() != 'u' || a.itemsize() != 1)
        throw py::value_error(std::string(name) + " must be uint8, got dtype " +
                              std::string(py::str(a.dtype())));
    if (a.ndim() != 3)
        throw py::value_error(std::string(name) + " must have shape [T,H,W], got ndim=" +
                              std::to_string(a.ndim()));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be C-contiguous");
    if (a.shape(0) < 1 || a.shape(1) < 1 || a.shape(2) < 1)
        throw py::value_error(std::string(name) + " must be non-empty");
}

// s[x] += row_t[x], s2[x] += row_t[x]^2 for the rows t0..t0+n-1 spaced `stride` bytes apart.
TTSFAST_MULTIVERSION
void accumulate_rows(const std::uint8_t* base, std::ptrdiff_t stride, std::ptrdiff_t n,
                     std::ptrdiff_t W, std::uint32_t* __restrict s, std::uint32_t* __restrict s2,
                     std::ptrdiff_t t0) {
    for (std::ptrdiff_t t = t0; t < t0 + n; ++t) {
        const std::uint8_t* __restrict row = base + t * stride;
        for (std::ptrdiff_t x = 0; x < W; ++x) {
            const std::uint32_t v = row[x];
            s[x] += v;
            s2[x] += v * v;
        }
    }
}

// Luminance and chroma of n interleaved 8-bit pixels with C channels (C = 3 or 4). The body
// is inlined into one multiversioned (AVX2 / default) function per C so that the channel
// stride is a compile-time constant the vectoriser can use.
template <int C>
TTSFAST_FORCE_INLINE void grey_chroma_body(
    const std::uint8_t* __restrict src, std::uint8_t* __restrict pd, std::uint8_t* __restrict pc,
    std::ptrdiff_t n, std::uint32_t w0, std::uint32_t w1, std::uint32_t w2) {
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        const std::uint32_t a = src[i * C], b = src[i * C + 1], c = src[i * C + 2];
        pd[i] = static_cast<std::uint8_t>((a * w0 + b * w1 + c * w2 + 32768u) >> 16);
        const std::uint32_t mx = std::max(a, std::max(b, c)), mn = std::min(a, std::min(b, c));
        const std::uint8_t ch = static_cast<std::uint8_t>(mx - mn);
        pc[i] = pc[i] > ch ? pc[i] : ch;
    }
}

TTSFAST_MULTIVERSION
void grey_chroma3(const std::uint8_t* __restrict src, std::uint8_t* __restrict pd,
                  std::uint8_t* __restrict pc, std::ptrdiff_t n, std::uint32_t w0,
                  std::uint32_t w1, std::uint32_t w2) {
    grey_chroma_body<3>(src, pd, pc, n, w0, w1, w2);
}

TTSFAST_MULTIVERSION
void grey_chroma4(const std::uint8_t* __restrict src, std::uint8_t* __restrict pd,
                  std::uint8_t* __restrict pc, std::ptrdiff_t n, std::uint32_t w0,
                  std::uint32_t w1, std::uint32_t w2) {
    grey_chroma_body<4>(src, pd, pc, n, w0, w1, w2);
}

void require_2d_u8_out(const py::array& a, const char* name, std::ptrdiff_t H, std::ptrdiff_t W) {
    if (a.dtype().kind() != 'u' || a.itemsize() != 1)
        throw py::value_error(std::string(name) + " must be uint8");
    if (a.ndim() != 2 || a.shape(0) != H || a.shape(1) != W)
        throw py::value_error(std::string(name) + " must have shape [H,W] of the source frame");
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be C-contiguous");
    if (!a.writeable())
        throw py::value_error(std::string(name) + " must be writeable");
}

// Luminance of one 8-bit colour frame [H,W,C] (C = 3 or 4, channel order BGR or RGB) written
// into dst [H,W] (BT.601 weights in 16-bit fixed point, within 1 grey level of cv2.cvtColor),
// and chroma_max[y,x] = max(chroma_max[y,x], max(channels) - min(channels)), in one pass.
void colour_to_grey(const py::array& src_in, py::array dst, py::array chroma_max, bool bgr) {
    if (src_in.dtype().kind() != 'u' || src_in.itemsize() != 1)
        throw py::value_error("src must be uint8");
    if (src_in.ndim() != 3 || (src_in.shape(2) != 3 && src_in.shape(2) != 4))
        throw py::value_error("src must have shape [H,W,3] or [H,W,4]");
    if (!(src_in.flags() & py::array::c_style))
        throw py::value_error("src must be C-contiguous");
    const std::ptrdiff_t H = src_in.shape(0), W = src_in.shape(1), C = src_in.shape(2);
    require_2d_u8_out(dst, "dst", H, W);
    require_2d_u8_out(chroma_max, "chroma_max", H, W);
    const std::uint8_t* src = static_cast<const std::uint8_t*>(src_in.data());
    std::uint8_t* pd = static_cast<std::uint8_t*>(dst.mutable_data());
    std::uint8_t* pc = static_cast<std::uint8_t*>(chroma_max.mutable_data());
    const std::uint32_t w0 = bgr ? 7471u : 19595u, w2 = bgr ? 19595u : 7471u, w1 = 38470u;
    {
        py::gil_scoped_release release;
        if (C == 3)
            grey_chroma3(src, pd, pc, H * W, w0, w1, w2);
        else
            grey_chroma4(src, pd, pc, H * W, w0, w1, w2);
    }
}

// Per-pixel temporal standard deviation and mean over T, float32 [H,W] each.
// Integer accumulators (exact): per row, sums in uint32 over chunks of at most 66051 frames
// (255^2 * 66051 < 2^32), flushed into uint64 totals.
py::tuple temporal_stats(const py::array& frames_in, int threads) {
    require_3d_u8(frames_in, "frames");
    auto frames = U8Array::ensure(frames_in);
    const std::ptrdiff_t T = frames.shape(0), H = frames.shape(1), W = frames.shape(2);
    py::array_t<float> stdv({H, W}), mean({H, W});
    const std::uint8_t* src = frames.data();
    float* ps = stdv.mutable_data();
    float* pm = mean.mutable_data();
    const int nt = resolve_threads(threads);
    constexpr std::ptrdiff_t kChunk = 66051;
    {
        py::gil_scoped_release release;
        parallel_bands(H, nt, [&](std::ptrdiff_t y0, std::ptrdiff_t y1) {
            std::vector<std::uint32_t> s(W), s2(W);
            std::vector<std::uint64_t> S, S2;
            const bool big = T > kChunk;
            if (big) { S.resize(W); S2.resize(W); }
            for (std::ptrdiff_t y = y0; y < y1; ++y) {
                if (big) { std::fill(S.begin(), S.end(), 0); std::fill(S2.begin(), S2.end(), 0); }
                for (std::ptrdiff_t t0 = 0; t0 < T; t0 += kChunk) {
                    const std::ptrdiff_t t1 = std::min(T, t0 + kChunk);
                    std::fill(s.begin(), s.end(), 0u);
                    std::fill(s2.begin(), s2.end(), 0u);
                    accumulate_rows(src + y * W, H * W, t1 - t0, W, s.data(), s2.data(),
                                    t0);
                    if (big)
                        for (std::ptrdiff_t x = 0; x < W; ++x) { S[x] += s[x]; S2[x] += s2[x]; }
                }
                for (std::ptrdiff_t x = 0; x < W; ++x) {
                    const double sum = big ? static_cast<double>(S[x]) : static_cast<double>(s[x]);
                    const double sum2 = big ? static_cast<double>(S2[x]) : static_cast<double>(s2[x]);
                    const double m = sum / T;
                    const double var = sum2 / T - m * m;
                    pm[y * W + x] = static_cast<float>(m);
                    ps[y * W + x] = static_cast<float>(std::sqrt(var > 0 ? var : 0.0));
                }
            }
        });
    }
    return py::make_tuple(stdv, mean);
}

// Validation shared by the crop+resize kernels: a non-empty uint8 [T,H,W] clip, an output
// size within 1..8192 and a finite crop box of positive size within +-1e7 px.
void check_crop_args(const py::array& frames_in, double x0, double y0, double cw, double ch,
                     int out_h, int out_w) {
    require_3d_u8(frames_in, "frames");
    if (out_h < 1 || out_w < 1 || out_h > 8192 || out_w > 8192)
        throw py::value_error("output size must be within 1..8192, got " +
                              std::to_string(out_h) + "x" + std::to_string(out_w));
    if (!(cw > 0) || !(ch > 0) || !std::isfinite(x0) || !std::isfinite(y0) ||
        !std::isfinite(cw) || !std::isfinite(ch) || std::fabs(x0) > 1e7 || std::fabs(y0) > 1e7 ||
        cw > 1e7 || ch > 1e7)
        throw py::value_error("crop box must be finite, within +-1e7 px, with positive width and height");
}

// Crop the box [x0, x0+cw) x [y0, y0+ch) (float, in source pixels, pixel-centre convention)
// of every frame and resize it bilinearly to [out_h, out_w]. Samples outside the source are 0.
U8Array crop_resize(const py::array& frames_in, double x0, double y0, double cw, double ch,
                    int out_h, int out_w, int threads) {
    check_crop_args(frames_in, x0, y0, cw, ch, out_h, out_w);
    auto frames = U8Array::ensure(frames_in);
    const std::ptrdiff_t T = frames.shape(0), H = frames.shape(1), W = frames.shape(2);
    U8Array out({static_cast<std::ptrdiff_t>(T), static_cast<std::ptrdiff_t>(out_h),
                 static_cast<std::ptrdiff_t>(out_w)});
    const std::uint8_t* src = frames.data();
    std::uint8_t* dst = out.mutable_data();
    const double sx = cw / out_w, sy = ch / out_h;
    // Precompute horizontal taps once.
    std::vector<std::ptrdiff_t> xi(out_w);
    std::vector<float> xf(out_w);
    std::vector<char> xok(out_w);
    for (int i = 0; i < out_w; ++i) {
        double xs = x0 + (i + 0.5) * sx - 0.5;
        double fl = std::floor(xs);
        xi[i] = static_cast<std::ptrdiff_t>(fl);
        xf[i] = static_cast<float>(xs - fl);
        xok[i] = (xs >= -0.5 && xs <= W - 0.5);
    }
    const int nt = resolve_threads(threads);
    {
        py::gil_scoped_release release;
        parallel_bands(T * out_h, nt, [&](std::ptrdiff_t r0, std::ptrdiff_t r1) {
            for (std::ptrdiff_t r = r0; r < r1; ++r) {
                const std::ptrdiff_t t = r / out_h, j = r % out_h;
                std::uint8_t* drow = dst + r * out_w;
                double ys = y0 + (j + 0.5) * sy - 0.5;
                if (ys < -0.5 || ys > H - 0.5) {
                    std::fill(drow, drow + out_w, 0);
                    continue;
                }
                double fl = std::floor(ys);
                std::ptrdiff_t ya = static_cast<std::ptrdiff_t>(fl);
                float fy = static_cast<float>(ys - fl);
                std::ptrdiff_t yb = std::min<std::ptrdiff_t>(H - 1, ya + 1);
                ya = std::max<std::ptrdiff_t>(0, ya);
                const std::uint8_t* ra = src + (t * H + ya) * W;
                const std::uint8_t* rb = src + (t * H + yb) * W;
                for (int i = 0; i < out_w; ++i) {
                    if (!xok[i]) { drow[i] = 0; continue; }
                    std::ptrdiff_t xa = std::max<std::ptrdiff_t>(0, xi[i]);
                    std::ptrdiff_t xb = std::min<std::ptrdiff_t>(W - 1, xi[i] + 1);
                    float fx = xf[i];
                    float top = ra[xa] + fx * (ra[xb] - ra[xa]);
                    float bot = rb[xa] + fx * (rb[xb] - rb[xa]);
                    float v = top + fy * (bot - top);
                    drow[i] = static_cast<std::uint8_t>(std::min(255.0f, std::max(0.0f, v + 0.5f)));
                }
            }
        });
    }
    return out;
}

// tmp[x] += w * row[x], x < n (the vertical pass of the area resize).
TTSFAST_MULTIVERSION
void axpy_u8(float w, const std::uint8_t* __restrict row, float* __restrict tmp, std::ptrdiff_t n) {
    for (std::ptrdiff_t x = 0; x < n; ++x) tmp[x] += w * static_cast<float>(row[x]);
}

// Area (box-average) taps of an axis: output i averages the source pixels overlapping
// [o + i*s, o + (i+1)*s] (pixel-centre coordinates; pixel k spans [k-0.5, k+0.5]), weighted by
// overlap and normalised by the part inside the image; outputs less than half inside are 0.
struct AreaTaps {
    std::vector<std::ptrdiff_t> start;  // first source index of output i
    std::vector<int> count;             // number of taps of output i (0: output is 0)
    std::vector<float> w;               // weights, max_taps per output
    int max_taps = 0;
};

AreaTaps area_taps(double o, double s, int n_out, std::ptrdiff_t n_src) {
    AreaTaps a;
    // never more taps than source pixels (bounds memory for absurd boxes)
    a.max_taps = static_cast<int>(std::min<double>(std::ceil(s) + 2.0, static_cast<double>(n_src) + 2.0));
    a.start.assign(n_out, 0);
    a.count.assign(n_out, 0);
    a.w.assign(static_cast<std::size_t>(n_out) * a.max_taps, 0.0f);
    for (int i = 0; i < n_out; ++i) {
        const double lo = o + i * s, hi = lo + s;
        std::ptrdiff_t k0 = static_cast<std::ptrdiff_t>(std::floor(lo + 0.5));
        std::ptrdiff_t k1 = static_cast<std::ptrdiff_t>(std::ceil(hi - 0.5));
        k0 = std::max<std::ptrdiff_t>(0, k0);
        k1 = std::min<std::ptrdiff_t>(n_src - 1, k1);
        double total = 0.0;
        int c = 0;
        for (std::ptrdiff_t k = k0; k <= k1 && c < a.max_taps; ++k) {
            const double ov = std::min(hi, k + 0.5) - std::max(lo, k - 0.5);
            if (ov <= 0) { if (c == 0) { ++k0; } continue; }
            a.w[static_cast<std::size_t>(i) * a.max_taps + c] = static_cast<float>(ov);
            total += ov;
            ++c;
        }
        if (c == 0 || total < 0.5 * s) continue;
        for (int m = 0; m < c; ++m)
            a.w[static_cast<std::size_t>(i) * a.max_taps + m] =
                static_cast<float>(a.w[static_cast<std::size_t>(i) * a.max_taps + m] / total);
        a.start[i] = k0;
        a.count[i] = c;
    }
    return a;
}

// Like crop_resize, but each output pixel is the area average of the source pixels its
// footprint covers (anti-aliased downsampling); same geometry: output (i, j) is centred at
// (x0 + (i+0.5)*width/out_w - 0.5, y0 + (j+0.5)*height/out_h - 0.5). Outside the source: 0.
U8Array crop_resize_area(const py::array& frames_in, double x0, double y0, double cw, double ch,
                         int out_h, int out_w, int threads) {
    check_crop_args(frames_in, x0, y0, cw, ch, out_h, out_w);
    auto frames = U8Array::ensure(frames_in);
    const std::ptrdiff_t T = frames.shape(0), H = frames.shape(1), W = frames.shape(2);
    U8Array out({static_cast<std::ptrdiff_t>(T), static_cast<std::ptrdiff_t>(out_h),
                 static_cast<std::ptrdiff_t>(out_w)});
    const std::uint8_t* src = frames.data();
    std::uint8_t* dst = out.mutable_data();
    const double sx = cw / out_w, sy = ch / out_h;
    const AreaTaps tx = area_taps(x0 - 0.5, sx, out_w, W);
    const AreaTaps ty = area_taps(y0 - 0.5, sy, out_h, H);
    std::ptrdiff_t xmin = W, xmax = -1;
    for (int i = 0; i < out_w; ++i)
        if (tx.count[i] > 0) {
            xmin = std::min(xmin, tx.start[i]);
            xmax = std::max(xmax, tx.start[i] + tx.count[i] - 1);
        }
    const int nt = resolve_threads(threads);
    {
        py::gil_scoped_release release;
        parallel_bands(T * out_h, nt, [&](std::ptrdiff_t r0, std::ptrdiff_t r1) {
            const std::ptrdiff_t nx = xmax >= xmin ? xmax - xmin + 1 : 0;
            std::vector<float> tmp(static_cast<std::size_t>(std::max<std::ptrdiff_t>(nx, 1)));
            for (std::ptrdiff_t r = r0; r < r1; ++r) {
                const std::ptrdiff_t t = r / out_h, j = r % out_h;
                std::uint8_t* drow = dst + r * out_w;
                if (ty.count[j] == 0 || nx == 0) { std::fill(drow, drow + out_w, 0); continue; }
                std::fill(tmp.begin(), tmp.end(), 0.0f);
                for (int m = 0; m < ty.count[j]; ++m) {
                    const float wy = ty.w[static_cast<std::size_t>(j) * ty.max_taps + m];
                    const std::uint8_t* row = src + (t * H + ty.start[j] + m) * W + xmin;
                    axpy_u8(wy, row, tmp.data(), nx);
                }
                for (int i = 0; i < out_w; ++i) {
                    const int c = tx.count[i];
                    if (c == 0) { drow[i] = 0; continue; }
                    const float* wv = &tx.w[static_cast<std::size_t>(i) * tx.max_taps];
                    const float* tv = &tmp[static_cast<std::size_t>(tx.start[i] - xmin)];
                    float v = 0.0f;
                    for (int m = 0; m < c; ++m) v += wv[m] * tv[m];
                    drow[i] = static_cast<std::uint8_t>(std::min(255.0f, std::max(0.0f, v + 0.5f)));
                }
            }
        });
    }
    return out;
}

}  // namespace

void register_preprocess(py::module_& m) {
    m.def("temporal_stats", &temporal_stats, py::arg("frames"), py::arg("threads") = 0,
          "Per-pixel temporal std and mean (float32 [H,W] each) of a uint8 [T,H,W] clip.");
    m.def("crop_resize", &crop_resize, py::arg("frames"), py::arg("x0"), py::arg("y0"),
          py::arg("width"), py::arg("height"), py::arg("out_h"), py::arg("out_w"),
          py::arg("threads") = 0,
          "Bilinear crop of the box (x0, y0, width, height) of each uint8 frame, resized to "
          "[out_h, out_w]; returns uint8 [T,out_h,out_w].");
    m.def("crop_resize_area", &crop_resize_area, py::arg("frames"), py::arg("x0"), py::arg("y0"),
          py::arg("width"), py::arg("height"), py::arg("out_h"), py::arg("out_w"),
          py::arg("threads") = 0,
          "Like crop_resize (same geometry), but each output pixel is the area average of the "
          "source pixels under its footprint: anti-aliased downsampling. uint8 [T,out_h,out_w].");
    m.def("colour_to_grey", &colour_to_grey, py::arg("src"), py::arg("dst"),
          py::arg("chroma_max"), py::arg("bgr") = true,
          "Luminance of a uint8 [H,W,3|4] frame (BGR or RGB) written into dst uint8 [H,W] "
          "(BT.601, within 1 grey level of cv2.cvtColor) and chroma_max (uint8 [H,W]) updated "
          "in place with max(channels) - min(channels) where larger; one pass, GIL released.");
}
