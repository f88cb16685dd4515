// ModelConfig: the hyperparameters of a Llama-family decoder (arch names a row of core/model/arch.h), whatever file
// format they came from.
#pragma once

#include <string>

namespace specdec {

struct ModelConfig {
  std::string arch = "llama";
  int dim = 0;          // H: residual width
  int hidden_dim = 0;   // F: MLP width
  int n_layers = 0;     // L
  int n_heads = 0;      // query heads
  int n_kv_heads = 0;   // key/value heads (GQA when < n_heads)
  int head_dim = 0;     // D; dim / n_heads unless the format says otherwise
  int vocab_size = 0;   // V
  int max_seq_len = 0;  // context length the model was trained for
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_embeddings = false;  // LM head shares the token embedding matrix
  bool qkv_bias = false;         // q/k/v projections add a bias (qwen2; core/model/arch.h)

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }

  // Throws specdec::Error naming `source` when a value is missing or inconsistent.
  void validate(const std::string& source) const;
  std::string describe() const;  // one line, for logs
  bool operator==(const ModelConfig&) const = default;
};

}  // namespace specdec
