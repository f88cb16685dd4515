// An EAGLE layer for stories260K whose drafts the target often accepts, without a trainer: fc (out = u when
// attention and MLP are small) fitted by ridge least squares to predict f_{t+1} from [embedding of x_{t+1}; f_t]
// over greedy continuations of the stories prompts; attention and MLP stay random (small), so masks and
// positions still matter. Written to the test scratch directory once per process.
#pragma once

#include <Eigen/Dense>

#include <filesystem>
#include <string>

#include "drafters/eagle/eagle.h"
#include "kernels/cpu/ops.h"
#include "tests/medusa/stories_features.h"

namespace specdec::test {

inline const std::string& fitted_eagle_weights() {
  static const std::string path = [] {
    auto& s = stories();
    const ModelConfig& cfg = s.model.config();
    const int H = cfg.dim;
    const WeightTensor& emb = s.loaded->weights.tok_embeddings;
    std::vector<float> rows_x, rows_y;  // [e; f; 1] and f_{t+1}
    for (const std::string& prompt : stories_prompts()) {
      const StoriesSequence seq = stories_sequence(prompt, 48, 1);
      const int T = static_cast<int>(seq.tokens.size());
      for (int t = 0; t + 1 < T; ++t) {
        const size_t at = rows_x.size();
        rows_x.resize(at + 2 * H + 1);
        cpu::dequantize_row(rows_x.data() + at,
                            static_cast<const uint8_t*>(emb.data) + seq.tokens[t + 1] * cpu::row_bytes(emb.dtype, H),
                            emb.dtype, H);
        std::copy_n(seq.hidden.begin() + static_cast<size_t>(t) * H, H, rows_x.begin() + at + H);
        rows_x[at + 2 * H] = 1.f;
        rows_y.insert(rows_y.end(), seq.hidden.begin() + static_cast<size_t>(t + 1) * H,
                      seq.hidden.begin() + static_cast<size_t>(t + 2) * H);
      }
    }
    using M = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const int n = static_cast<int>(rows_y.size() / H), D = 2 * H + 1;
    const M X =
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(rows_x.data(), n, D)
            .cast<double>();
    const M Y =
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(rows_y.data(), n, H)
            .cast<double>();
    const M A = X.transpose() * X + 1e-2 * M::Identity(D, D);
    const M B = A.ldlt().solve(X.transpose() * Y);  // D x H: out = x B
    eagle::EagleWeights w = eagle::init_eagle_weights(eagle::EagleConfig::of_target(cfg), 13, 0.02f);
    for (int o = 0; o < H; ++o) {
      for (int i = 0; i < 2 * H; ++i) w.fc_w[static_cast<size_t>(o) * 2 * H + i] = static_cast<float>(B(i, o));
      w.fc_b[o] = static_cast<float>(B(2 * H, o));
    }
    std::filesystem::create_directories(SPECDEC_TEST_SCRATCH);
    const std::string p = std::string(SPECDEC_TEST_SCRATCH) + "/fitted_eagle.safetensors";
    eagle::save_eagle_weights(w, p);
    return p;
  }();
  return path;
}

}  // namespace specdec::test
