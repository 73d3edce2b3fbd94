// pybind11 entry point of ttsfast._native. Each kernel file registers its own functions.
#include <pybind11/pybind11.h>
#include <thread>

namespace py = pybind11;

void register_preprocess(py::module_& m);
void register_flow(py::module_& m);

PYBIND11_MODULE(_native, m) {
    m.doc() = "ttsfast native kernels (C++17)";
    m.def("build_info", [] {
        py::dict d;
        d["build_type"] = TTSFAST_BUILD_TYPE;
        d["cxx_flags"] = TTSFAST_CXX_FLAGS;
        d["flow_kernel_copies"] = TTSFAST_FLOW_COPIES;
        d["compiler"] = TTSFAST_COMPILER;
        d["hardware_threads"] = std::thread::hardware_concurrency();
        return d;
    }, "Build type, compiler and flags the native module was compiled with.");
    register_preprocess(m);
    register_flow(m);
}
