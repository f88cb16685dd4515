// Weight element types and their storage geometry (block size, bytes per block).
// Quantized layouts follow GGML's (llama.cpp) so GGUF tensors are used in place, without conversion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace specdec::cpu {

enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K };

struct DTypeInfo {
  std::string_view name;
  int block;        // elements per block (1 for plain floats)
  int block_bytes;  // bytes per block
};

constexpr DTypeInfo dtype_info(DType t) {
  switch (t) {
    case DType::F32:
      return {"f32", 1, 4};
    case DType::F16:
      return {"f16", 1, 2};
    case DType::BF16:
      return {"bf16", 1, 2};
    case DType::Q8_0:
      return {"q8_0", 32, 34};
    case DType::Q4_0:
      return {"q4_0", 32, 18};
    case DType::Q4_1:
      return {"q4_1", 32, 20};
    case DType::Q4_K:
      return {"q4_k", 256, 144};
    case DType::Q5_K:
      return {"q5_k", 256, 176};
    case DType::Q6_K:
      return {"q6_k", 256, 210};
  }
  return {"?", 1, 0};
}

// Bytes of one row of n elements (n must be a multiple of the block size).
constexpr size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo i = dtype_info(t);
  return static_cast<size_t>(n / i.block) * static_cast<size_t>(i.block_bytes);
}

// IEEE half / bfloat16 <-> float, bit-exact, no hardware intrinsics needed.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
inline float bf16_to_fp32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace specdec::cpu
