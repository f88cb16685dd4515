// AVX-VNNI quantized matmul (compiled with -mavx2 -mfma -mf16c -mavxvnni, entered only after a runtime
// check for avxvnni): the 256-bit kernel of quant_avx2_impl.h with vpdpbusd integer dots (four byte
// products accumulated into an int32 lane per instruction, instead of maddubs + madd), for CPUs with
// AVX-VNNI and without AVX-512 (Alder Lake and later client cores; Zen 5 prefers the avx512 level).
#include "kernels/cpu/quant_avx2_impl.h"

#if !SPECDEC_QK_VNNI256
#error "quant_avxvnni.cpp needs -mavxvnni (and no AVX-512 flags)"
#endif
