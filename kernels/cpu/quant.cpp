// Quantized formats. Dequantization of the GGML block types lands with the GGUF reader.
#include "kernels/cpu/quant.h"

#include "core/error.h"

namespace specdec::cpu {

void dequantize_row_quant(float*, const void*, DType t, int64_t) {
  SPECDEC_FAIL("dequantization of ", dtype_info(t).name, " is not implemented yet");
}

bool matmul_quant(float*, const float*, const void*, DType, int, int, int) { return false; }

}  // namespace specdec::cpu
