// The hot kernels of the dense flow, flow_pyramid.cpp and flow_iterate.cpp, are compiled once
// per instruction set (CMakeLists.txt): for the baseline of the target into namespace
// ttsfast::flow::isa_base and, on x86 with GCC or Clang, once more with -mavx2 into
// ttsfast::flow::isa_avx2; flow_isa.cpp picks the copy at run time.  Both copies give
// bit-identical results: -mavx2 does not enable FMA, every file is built with
// -ffp-contract=off, and nothing is reassociated (no -ffast-math).
//
// One-definition rule: everything the kernel files define lives in TTSFAST_ISA_NS (their
// file-local functions in an anonymous namespace inside it), so the two copies share no
// symbol of ours; inline helpers they need belong here, not in flow_internal.hpp.  What
// both copies still emit, the inline members of the shared types (flow_internal.hpp) and
// std:: template instantiations, exist in the baseline objects as well, which CMakeLists.txt
// links first so that the linker keeps their baseline definitions (tests/test_flow_isa.py
// checks the built module for AVX code outside isa_avx2).
#pragma once

#ifndef TTSFAST_ISA_NS
#error "flow kernel files are compiled with TTSFAST_ISA_NS set to their copy's namespace (CMakeLists.txt)"
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "flow_internal.hpp"

namespace ttsfast {
namespace flow {
namespace TTSFAST_ISA_NS {

// This copy's entry points (the table `kernels` of flow_internal.hpp, defined in
// flow_iterate.cpp): see Kernels for what they do.
void expand_frame(const Job& job, int t, Workspace& ws, std::vector<FBuf>& R, int off,
                  bool interleave);
void flow_pair(const Job& job, int t, Workspace& ws);

// Planes of a multi-plane buffer are spaced so that the same pixel of different planes (and
// of different buffers) falls into different L1 cache sets: with plain w*h strides (often a
// multiple of 4 KiB) the ~20 streams of the matrix update all alias to one set and the
// kernels run several times slower.
inline std::size_t pstride(int w, int h) {
    const std::size_t n = static_cast<std::size_t>(w) * h;
    const std::size_t r = 272;  // plane offset mod 1024 floats (4 KiB): 1088 bytes
    return n <= r ? r : ((n - r + 1023) / 1024) * 1024 + r;
}

// Bilinear resize from `src_len` to `dst_len` samples, pixel-centre convention, clamped border.
// Horizontal taps: source index xi[i] and weight xf[i] of its right neighbour.
inline void bilinear_taps(int src_len, int dst_len, std::vector<int>& xi, std::vector<float>& xf) {
    const double s = static_cast<double>(src_len) / dst_len;
    xi.resize(dst_len);
    xf.resize(dst_len);
    for (int i = 0; i < dst_len; ++i) {
        float f = static_cast<float>((i + 0.5) * s - 0.5);
        int s0 = static_cast<int>(std::floor(f));
        f -= s0;
        if (s0 < 0) { s0 = 0; f = 0; }
        if (s0 >= src_len - 1) { s0 = src_len - 1; f = 0; }
        xi[i] = s0;
        xf[i] = f;
    }
}

// Vertical taps of output row j (scale `s` = src_len / dst_len): rows r0, r1 and the weight of r1.
inline float bilinear_rows(int j, double s, int src_len, int& r0, int& r1) {
    float f = static_cast<float>((j + 0.5) * s - 0.5);
    const int s0 = static_cast<int>(std::floor(f));
    f -= s0;
    r0 = std::min(std::max(s0, 0), src_len - 1);
    r1 = std::min(std::max(s0 + 1, 0), src_len - 1);
    return f;
}

}  // namespace TTSFAST_ISA_NS
}  // namespace flow
}  // namespace ttsfast
