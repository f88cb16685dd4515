// Weight tensors of a Llama-family model as views into storage the loader owns (a memory map or
// converted buffers). Matrices are row-major (out_features, in_features), GGML block-quantized or float.
#pragma once

#include <any>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/dtype.h"

namespace specdec {

struct WeightTensor {
  std::string name;
  cpu::DType dtype = cpu::DType::F32;
  int64_t rows = 0;  // out features (1 for vectors)
  int64_t cols = 0;  // in features (elements per row)
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  const float* f32() const { return static_cast<const float*>(data); }
  size_t nbytes() const { return static_cast<size_t>(rows) * cpu::row_bytes(dtype, cols); }
};

// One field per LayerRole; core/model/arch.h names each in every format.
struct LayerWeights {
  WeightTensor attn_norm;  // (H) f32
  WeightTensor wq;         // (Hq*D, H)
  WeightTensor wk;         // (Hkv*D, H)
  WeightTensor wv;         // (Hkv*D, H)
  WeightTensor wo;         // (H, Hq*D)
  WeightTensor ffn_norm;   // (H) f32
  WeightTensor w1;         // gate (F, H)
  WeightTensor w2;         // down (H, F)
  WeightTensor w3;         // up (F, H)
  WeightTensor bq;         // (1, Hq*D) f32; empty unless the architecture has q/k/v biases
  WeightTensor bk;         // (1, Hkv*D) f32
  WeightTensor bv;         // (1, Hkv*D) f32
};

struct LlamaWeights {
  WeightTensor tok_embeddings;  // (V, H)
  std::vector<LayerWeights> layers;
  WeightTensor final_norm;  // (H) f32
  WeightTensor output;      // (V, H); the same view as tok_embeddings when tied
  // Keeps whatever the views point into alive (a MappedFile, converted float buffers, ...).
  std::vector<std::any> storage;
};

}  // namespace specdec
