// AVX2 + FMA + F16C quantized matmul (compiled with -mavx2 -mfma -mf16c, entered only after a runtime
// check): the 256-bit kernel of quant_avx2_impl.h with maddubs/madd integer dots.
#include "kernels/cpu/quant_avx2_impl.h"

#if SPECDEC_QK_VNNI256 || SPECDEC_QK_AVX512
#error "quant_avx2.cpp must be compiled without AVX-VNNI / AVX-512 flags"
#endif
