// Run-time choice of the copy of the hot flow kernels (flow_kernels.hpp): the AVX2 copy
// when this build has one and the CPU (and OS) support AVX2, else the baseline copy;
// TTSFAST_FLOW_ISA=baseline forces the baseline (tests, measurements).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "flow_internal.hpp"

namespace ttsfast {
namespace flow {

KernelCopy flow_kernels() {
    const char* env = std::getenv("TTSFAST_FLOW_ISA");
    const std::string want = env ? env : "";
    if (want == "baseline") return {"baseline", &isa_base::kernels};
    if (!want.empty() && want != "auto" && want != "avx2")
        throw std::invalid_argument("TTSFAST_FLOW_ISA must be auto, baseline or avx2, got '" +
                                    want + "'");
#ifdef TTSFAST_FLOW_AVX2  // set where CMakeLists.txt builds that copy (x86, GCC or Clang)
    __builtin_cpu_init();  // idempotent; false below unless the OS also saves the YMM state
    if (__builtin_cpu_supports("avx2")) return {"avx2", &isa_avx2::kernels};
#endif
    if (want == "avx2")
        throw std::runtime_error(
            "TTSFAST_FLOW_ISA=avx2, but this build or CPU has no AVX2 copy of the flow kernels");
    return {"baseline", &isa_base::kernels};
}

}  // namespace flow
}  // namespace ttsfast
