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
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace specdec::train {

struct FeatureData {
  int hidden_size = 0;
  int vocab_size = 0;
  int topk = 0;
  std::string feature;              // which feature hidden holds: "final_norm"
  std::string target_sha256;        // of the target model file the features came from
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

// ---- writing and metadata ------------------------------------------------------------------------------

// The file attributes of a features file beside its datasets (docs/training-data.md lists them all).
struct FeatureFileInfo {
  int hidden_size = 0;
  int vocab_size = 0;
  int topk = 0;
  std::string feature = "final_norm";
  std::string target_path;    // the model file as given to the collector
  std::string target_sha256;  // target_sha256(target_path)
  std::string sources;        // JSON: the prompt files with their sha256, the mode, the selection
  std::string created_by;     // the specdec commit; empty = not written
  std::string config;         // the collect config as INI text; empty = not written
  // Filled by read_feature_info from the datasets' extents (the writer ignores them).
  int64_t n_rows = 0;
  int n_sequences = 0;
};

// The attributes and the row and sequence counts (the datasets' values are not read); throws like
// read_features for a file that is not a features file.
FeatureFileInfo read_feature_info(const std::string& path);

// The sha256 that names a target: of the model file, or for a folder (a safetensors checkpoint) of the
// lines "<sha256 of the file>  <file name>\n" of its regular files in name order (sha256sum's format).
std::string target_sha256(const std::string& model_path);

// Writes a features file one sequence at a time, atomically: the rows go to PATH.tmp, and commit() closes
// it, fsyncs it, renames it to PATH and fsyncs the folder, so PATH is either absent or complete (a killed
// writer leaves at most a PATH.tmp). Destroyed without commit(): PATH.tmp is removed. Move-only.
class FeatureWriter {
 public:
  // Creates PATH.tmp (replacing one left by a killed writer); info.hidden_size, vocab_size, topk > 0.
  FeatureWriter(std::string path, const FeatureFileInfo& info);
  FeatureWriter(FeatureWriter&&) noexcept;
  FeatureWriter& operator=(FeatureWriter&&) noexcept;
  ~FeatureWriter();

  // One sequence of T = tokens.size() rows (row semantics above): hidden T x hidden_size floats (stored
  // rounded to float16, nearest even; a value outside float16's range is an error), topk_ids and
  // topk_probs T x topk. 0 <= prompt_len <= T.
  void append(std::span<const int32_t> tokens, int prompt_len, std::span<const float> hidden,
              std::span<const int32_t> topk_ids, std::span<const float> topk_probs);
  // Writes offsets and prompt_len, then makes PATH appear whole (above). The writer is spent afterwards.
  void commit();

  const std::string& path() const;
  int64_t n_rows() const;
  int n_sequences() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace specdec::train
