// The config of the tiny llama that the format tests write: only rms_eps and tied embeddings differ by format.
#pragma once

#include "core/model/config.h"

namespace specdec::test {

inline ModelConfig tiny_llama_config(float rms_eps, bool tied) {
  return ModelConfig{.arch = "llama",
                     .dim = 64,
                     .hidden_dim = 96,
                     .n_layers = 2,
                     .n_heads = 4,
                     .n_kv_heads = 2,
                     .head_dim = 16,
                     .vocab_size = 32,
                     .max_seq_len = 128,
                     .rope_theta = 500000.f,
                     .rms_eps = rms_eps,
                     .tied_embeddings = tied};
}

}  // namespace specdec::test
