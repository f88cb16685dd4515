// ModelConfig validation: catches inconsistent hyperparameters before any tensor is touched.
#include "core/model/config.h"

#include "core/error.h"

namespace specdec {

void ModelConfig::validate(const std::string& source) const {
  SPECDEC_CHECK(dim > 0 && hidden_dim > 0 && n_layers > 0 && n_heads > 0 && n_kv_heads > 0 && vocab_size > 0 &&
                    max_seq_len > 0 && head_dim > 0,
                source, ": expected positive model dimensions, got ", describe());
  SPECDEC_CHECK(n_heads % n_kv_heads == 0, source, ": expected n_heads (", n_heads,
                ") to be a multiple of n_kv_heads (", n_kv_heads, ")");
  SPECDEC_CHECK(head_dim % 2 == 0, source, ": expected an even head dimension for RoPE, got ", head_dim);
  SPECDEC_CHECK(rms_eps > 0.f && rope_theta > 0.f, source, ": expected rms_eps > 0 and rope_theta > 0, got ", rms_eps,
                " and ", rope_theta);
}

std::string ModelConfig::describe() const {
  return detail::concat(arch, " dim=", dim, " hidden=", hidden_dim, " layers=", n_layers, " heads=", n_heads,
                        " kv_heads=", n_kv_heads, " head_dim=", head_dim, " vocab=", vocab_size, " ctx=", max_seq_len,
                        " rope_theta=", rope_theta, " eps=", rms_eps, tied_embeddings ? " tied" : " untied",
                        qkv_bias ? " qkv_bias" : "");
}

}  // namespace specdec
