// Preprocessing kernels: per-pixel temporal statistics of a uint8 clip (used to find the
// moving ultrasound sector) and bilinear crop+resize of a whole clip to the analysis grid.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"

namespace py = pybind11;
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

// Per-pixel temporal standard deviation and mean over T, float32 [H,W] each.
py::tuple temporal_stats(const py::array& frames_in, int threads) {
    require_3d_u8(frames_in, "frames");
    auto frames = U8Array::ensure(frames_in);
    const std::ptrdiff_t T = frames.shape(0), H = frames.shape(1), W = frames.shape(2);
    py::array_t<float> stdv({H, W}), mean({H, W});
    const std::uint8_t* src = frames.data();
    float* ps = stdv.mutable_data();
    float* pm = mean.mutable_data();
    const int nt = resolve_threads(threads);
    {
        py::gil_scoped_release release;
        parallel_bands(H, nt, [&](std::ptrdiff_t y0, std::ptrdiff_t y1) {
            std::vector<double> s(W), s2(W);
            for (std::ptrdiff_t y = y0; y < y1; ++y) {
                std::fill(s.begin(), s.end(), 0.0);
                std::fill(s2.begin(), s2.end(), 0.0);
                for (std::ptrdiff_t t = 0; t < T; ++t) {
                    const std::uint8_t* row = src + (t * H + y) * W;
                    for (std::ptrdiff_t x = 0; x < W; ++x) {
                        double v = row[x];
                        s[x] += v;
                        s2[x] += v * v;
                    }
                }
                for (std::ptrdiff_t x = 0; x < W; ++x) {
                    double m = s[x] / T;
                    double var = s2[x] / T - m * m;
                    pm[y * W + x] = static_cast<float>(m);
                    ps[y * W + x] = static_cast<float>(std::sqrt(var > 0 ? var : 0.0));
                }
            }
        });
    }
    return py::make_tuple(stdv, mean);
}

// Crop the box [x0, x0+cw) x [y0, y0+ch) (float, in source pixels, pixel-centre convention)
// of every frame and resize it bilinearly to [out_h, out_w]. Samples outside the source are 0.
U8Array crop_resize(const py::array& frames_in, double x0, double y0, double cw, double ch,
                    int out_h, int out_w, int threads) {
    require_3d_u8(frames_in, "frames");
    if (out_h < 1 || out_w < 1 || out_h > 8192 || out_w > 8192)
        throw py::value_error("output size must be within 1..8192, got " +
                              std::to_string(out_h) + "x" + std::to_string(out_w));
    if (!(cw > 0) || !(ch > 0) || !std::isfinite(x0) || !std::isfinite(y0) ||
        !std::isfinite(cw) || !std::isfinite(ch))
        throw py::value_error("crop box must be finite with positive width and height");
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

}  // namespace

void register_preprocess(py::module_& m) {
    m.def("temporal_stats", &temporal_stats, py::arg("frames"), py::arg("threads") = 0,
          "Per-pixel temporal std and mean (float32 [H,W] each) of a uint8 [T,H,W] clip.");
    m.def("crop_resize", &crop_resize, py::arg("frames"), py::arg("x0"), py::arg("y0"),
          py::arg("width"), py::arg("height"), py::arg("out_h"), py::arg("out_w"),
          py::arg("threads") = 0,
          "Bilinear crop of the box (x0, y0, width, height) of each uint8 frame, resized to "
          "[out_h, out_w]; returns uint8 [T,out_h,out_w].");
}
