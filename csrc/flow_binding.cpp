// Python binding of the dense flow: every argument check in validated_job, then the engine
// (flow_job.cpp, flow_schedule.cpp) with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "flow_internal.hpp"

namespace py = pybind11;

namespace {

using ttsfast::flow::Job;
using ttsfast::flow::Params;

std::string dtype_str(const py::array& a) { return std::string(py::str(a.dtype())); }

// The mask as bool/uint8 [H,W] C-contiguous data, or null for None; mask_arr keeps it alive.
const std::uint8_t* checked_mask(const py::object& mask_obj, py::ssize_t H, py::ssize_t W,
                                 py::array& mask_arr) {
    if (mask_obj.is_none()) return nullptr;
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
    return static_cast<const std::uint8_t*>(mask_arr.data());
}

// Finite, bounded float intensities only (checked without the GIL).
void check_float_frames(const float* s, std::size_t n) {
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
        throw py::value_error("float frames must be finite intensities within [-65536, 65536]");
}

// Every argument check of dense_flow_farneback, in the order they are reported, before any
// memory is touched; returns the job's frames, size, parameters and mask.
Job validated_job(const py::array& frames, const Params& p, const py::object& mask_obj,
                  int threads, int edge_margin, py::array& mask_arr) {
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
    if (!(p.poly_n == 5 || p.poly_n == 7))
        throw py::value_error("poly_n must be 5 or 7, got " + std::to_string(p.poly_n));
    const py::ssize_t min_side = 2 * p.poly_n + 1;
    if (H < min_side || W < min_side)
        throw py::value_error("frames of " + std::to_string(H) + "x" + std::to_string(W) +
                              " are smaller than the polynomial filter (" +
                              std::to_string(min_side) + " px)");
    if (H > 8192 || W > 8192 || T > 1000000)
        throw py::value_error("frames too large (at most 8192x8192 px)");
    if (!(p.pyr_scale > 0 && p.pyr_scale < 1))
        throw py::value_error("pyr_scale must be in (0, 1)");
    if (p.levels < 1 || p.levels > 32) throw py::value_error("levels must be in 1..32");
    if (p.winsize < 1 || p.winsize > 255 || p.winsize % 2 == 0)
        throw py::value_error("winsize must be odd and in 1..255, got " +
                              std::to_string(p.winsize));
    if (p.iterations < 1 || p.iterations > 1000)
        throw py::value_error("iterations must be in 1..1000");
    if (!(p.poly_sigma > 0 && p.poly_sigma <= 10))
        throw py::value_error("poly_sigma must be in (0, 10]");
    if (threads < 0 || threads > 1024) throw py::value_error("threads must be in 0..1024");
    if (edge_margin < 0 || edge_margin > 64) throw py::value_error("edge_margin must be in 0..64");
    Job job;
    job.mask = checked_mask(mask_obj, H, W, mask_arr);
    if (is_f32)
        check_float_frames(static_cast<const float*>(frames.data()),
                           static_cast<std::size_t>(T) * H * W);
    job.frames = frames.data();
    job.is_u8 = is_u8;
    job.T = static_cast<int>(T);
    job.H = static_cast<int>(H);
    job.W = static_cast<int>(W);
    job.p = p;
    job.out = nullptr;
    return job;
}

// Working memory kept between calls on frames of one size, mask and parameters (a stream's
// chunks): the per-thread workspaces and the key they were laid out for.  One call at a time
// uses them; a call that finds them in use makes fresh ones.
struct FlowBuffers {
    std::mutex mu;
    std::vector<double> key;
    std::vector<ttsfast::flow::Workspace> ws;
};

// The workspaces of `fb` for `job` (emptied first when laid out for another key), with `lk`
// holding them; null when there is no `fb` or another call holds it.
std::vector<ttsfast::flow::Workspace>* kept_workspaces(FlowBuffers* fb, const Job& job,
                                                       std::unique_lock<std::mutex>& lk) {
    if (!fb) return nullptr;
    lk = std::unique_lock<std::mutex>(fb->mu, std::try_to_lock);
    if (!lk.owns_lock()) return nullptr;
    std::vector<double> key = ttsfast::flow::workspace_key(job);
    if (key != fb->key) {
        fb->ws.clear();
        fb->key = std::move(key);
    }
    return &fb->ws;
}

py::dict profile_dict(const Job& job, const ttsfast::flow::RunStats& st) {
    py::dict prof;
    for (int s = 0; s < ttsfast::flow::kNumSteps; ++s) prof[ttsfast::flow::kStepNames[s]] = st.t[s];
    prof["threads"] = st.threads;
    prof["levels_used"] = static_cast<int>(job.levels.size());
    prof["computed_fraction"] = ttsfast::flow::computed_fraction(job);
    return prof;
}

// The array the flow is written to: `out_obj` when given (float32 [T-1,H,W,2] of the frames'
// T, H, W, C-contiguous, writeable, not overlapping the frames; every element is written), else
// a new one.
py::array flow_output(const py::object& out_obj, const py::array& frames) {
    const std::vector<py::ssize_t> shape = {frames.shape(0) - 1, frames.shape(1), frames.shape(2), 2};
    if (out_obj.is_none()) return py::array_t<float>(shape);
    if (!py::isinstance<py::array>(out_obj)) throw py::value_error("out must be a numpy array or None");
    py::array a = out_obj.cast<py::array>();
    const bool f32 = a.dtype().kind() == 'f' && a.itemsize() == 4;
    bool same = a.ndim() == 4;
    for (py::ssize_t i = 0; same && i < 4; ++i) same = a.shape(i) == shape[i];
    if (!f32 || !same || !(a.flags() & py::array::c_style) || !a.writeable())
        throw py::value_error("out must be a writeable C-contiguous float32 array [T-1,H,W,2] of the frames' size");
    const auto* o0 = static_cast<const char*>(a.data());
    const auto* f0 = static_cast<const char*>(frames.data());
    if (o0 < f0 + frames.nbytes() && f0 < o0 + a.nbytes()) throw py::value_error("out must not overlap the frames");
    return a;
}

py::object dense_flow_farneback(const py::array& frames, double pyr_scale, int levels,
                                int winsize, int iterations, int poly_n, double poly_sigma,
                                bool gaussian, const py::object& mask_obj, int threads,
                                bool profile, bool skip_blank, int edge_margin,
                                const py::object& buffers, const py::object& out_obj) {
    FlowBuffers* fb = nullptr;
    if (!buffers.is_none()) {
        if (!py::isinstance<FlowBuffers>(buffers))
            throw py::value_error("buffers must be a FlowBuffers or None");
        fb = buffers.cast<FlowBuffers*>();
    }
    py::array mask_arr;
    Job job = validated_job(
        frames, Params{pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, gaussian},
        mask_obj, threads, edge_margin, mask_arr);
    py::array out = flow_output(out_obj, frames);
    job.out = static_cast<float*>(out.mutable_data());
    ttsfast::flow::RunStats st;
    {
        py::gil_scoped_release rel;
        ttsfast::flow::prepare_job(job, skip_blank, edge_margin);
        std::unique_lock<std::mutex> lk;
        st = ttsfast::flow::compute_flow(job, threads, profile, kept_workspaces(fb, job, lk));
    }
    if (!profile) return std::move(out);
    return py::make_tuple(out, profile_dict(job, st));
}

py::list farneback_levels(int H, int W, double pyr_scale, int levels) {
    if (H < 1 || W < 1 || !(pyr_scale > 0 && pyr_scale < 1) || levels < 1 || levels > 32)
        throw py::value_error("invalid size or pyramid parameters");
    Params p{pyr_scale, levels, 1, 1, 5, 1.1, false};
    py::list l;
    for (const auto& L : ttsfast::flow::make_levels(W, H, p)) l.append(py::make_tuple(L.h, L.w));
    return l;
}

}  // namespace

void register_flow(py::module_& m) {
    py::class_<FlowBuffers>(m, "FlowBuffers",
                            "Working memory of dense_flow_farneback kept between calls (buffers=).")
        .def(py::init<>());
    m.def("dense_flow_farneback", &dense_flow_farneback, py::arg("frames"),
          py::arg("pyr_scale"), py::arg("levels"), py::arg("winsize"), py::arg("iterations"),
          py::arg("poly_n"), py::arg("poly_sigma"), py::arg("gaussian"),
          py::arg("mask") = py::none(), py::arg("threads") = 0, py::arg("profile") = false,
          py::arg("skip_blank") = true, py::arg("edge_margin") = 0, py::arg("buffers") = py::none(),
          py::arg("out") = py::none(),
          "Farneback dense flow of every consecutive pair of a uint8/float32 [T,H,W] clip; "
          "returns float32 [T-1,H,W,2] (dx, dy) px/frame, or (flow, step timings) when "
          "profile=True. buffers: a FlowBuffers whose working memory the call uses and keeps "
          "(same flow; for repeated calls on frames of one size and mask). out: a float32 "
          "C-contiguous [T-1,H,W,2] array to write the flow into (and return).");
    m.def("flow_isa", [] { return std::string(ttsfast::flow::flow_kernels().isa); },
          "Copy of the flow kernels dense_flow_farneback runs now: 'avx2' (built for x86 with "
          "GCC/Clang, CPU with AVX2) or 'baseline'; TTSFAST_FLOW_ISA=baseline forces the "
          "baseline. Both give bit-identical flow.");
    m.def("farneback_levels", &farneback_levels, py::arg("height"), py::arg("width"),
          py::arg("pyr_scale"), py::arg("levels"),
          "Sizes (h, w) of the pyramid layers used, finest first.");
}
