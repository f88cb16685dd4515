// Training data of the feature drafters (Medusa heads, EAGLE): per token of each training sequence, the
// target's feature at that position and its next-token distribution (top-k soft labels). Written by
// `specdec collect` (drafters/train/collect.cpp) into an HDF5 file (docs/training-data.md), read back by
// the trainers, and by h5py / PyTorch.
//
// Row r of sequence s (rows offsets[s] .. offsets[s+1]-1) is position t = r - offsets[s]:
//   tokens[r]        the token at position t
//   hidden[r]        the target's feature after reading tokens 0..t (hidden_size floats; final-norm state)
//   topk_ids/probs   the target's next-token distribution at t (it predicts tokens[r+1]), its topk most
//                    likely ids, in decreasing probability, with their probabilities (softmax at T = 1)
// prompt_len[s] tokens of sequence s are the prompt (chat template applied); the rest is the response.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace specdec::train {

struct FeatureData {
  int hidden_size = 0;
  int vocab_size = 0;
  int topk = 0;
  std::string feature;        // which feature hidden holds: "final_norm"
  std::string target_sha256;  // of the target model file the features came from
  std::vector<int32_t> tokens;      // N
  std::vector<int64_t> offsets;     // S + 1, offsets[0] = 0, offsets[S] = N
  std::vector<int32_t> prompt_len;  // S
  std::vector<float> hidden;        // N x hidden_size (stored as float16 on disk)
  std::vector<int32_t> topk_ids;    // N x topk
  std::vector<float> topk_probs;    // N x topk

  int64_t n_rows() const { return static_cast<int64_t>(tokens.size()); }
  int n_sequences() const { return offsets.empty() ? 0 : static_cast<int>(offsets.size()) - 1; }
};

// Reads a whole features file; throws specdec::Error naming the file and what is wrong (not a features
// file, a missing dataset, inconsistent shapes, a truncated file).
FeatureData read_features(const std::string& path);

}  // namespace specdec::train
