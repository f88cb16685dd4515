// What the feature drafters' trainers (drafters/medusa/train_medusa.cpp, drafters/eagle/train_eagle.cpp) do
// alike: the checks of their shared config keys, the thread count, the step plan, the resume fingerprint's and
// the metadata's shared keys, opening a checkpoint, and silu. Each trainer adds its own keys to the JSON objects
// built here (nlohmann::json objects keep their keys sorted, so where a key is added does not change the text).
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/model/loader.h"
#include "core/model/safetensors.h"
#include "drafters/train/features.h"

namespace specdec::train {

// A training data file as the metadata records it (sha256 empty when not computed).
struct DataFileInfo {
  std::string path;
  uint64_t bytes = 0;
  std::string sha256;
};

inline float silu(float y) { return y / (1.f + std::exp(-y)); }
// d silu(y) / dy = s (1 + y (1 - s)), s = sigmoid(y).
inline float silu_grad(float y) {
  const float s = 1.f / (1.f + std::exp(-y));
  return s * (1.f + y * (1.f - s));
}

// Throws a one-line specdec::Error naming the key: epochs >= 1 or steps > 0; 0 <= min_lr <= lr, lr > 0; warmup >= 0.
void check_schedule(int epochs, int64_t steps, float lr, float min_lr, int64_t warmup);
// Likewise: heldout_fraction in [0, 1); checkpoint_every >= 0; a checkpoint path with checkpoint_every > 0 or resume.
void check_split_and_checkpoints(double heldout_fraction, int64_t checkpoint_every, const std::string& checkpoint_path,
                                 bool resume);
// Likewise for a vocabulary option (train_vocab, draft_vocab): n = 0 (the full vocabulary) or in [topk, V].
void check_vocab_option(const char* key, int n, const FeatureData& data);

// threads > 0: Eigen and OpenMP use that many; returns the count Eigen uses (what the fingerprint records).
int set_threads(int threads);

// The optimiser steps of a run over `items` training items (rows, chunks) in batches of `batch`: steps > 0 is
// exactly that many, else epochs passes.
struct StepPlan {
  int64_t steps_per_epoch = 0;
  int64_t total_steps = 0;
  int n_epochs = 0;
};
StepPlan plan_steps(int64_t items, int64_t batch, int epochs, int64_t steps);

// The data files as the metadata's "data_files" array.
nlohmann::json data_files_json(const std::vector<DataFileInfo>& files);

// The config keys both trainers share that decide the weights: in the resume fingerprint and the metadata.
template <typename Config>
nlohmann::json shared_config_keys(const Config& cfg) {
  return {{"batch", cfg.batch},
          {"lr", cfg.lr},
          {"min_lr", cfg.min_lr},
          {"warmup", cfg.warmup},
          {"weight_decay", cfg.weight_decay},
          {"clip", cfg.clip},
          {"init_scale", cfg.init_scale},
          {"seed", cfg.seed},
          {"heldout_fraction", cfg.heldout_fraction},
          {"train_vocab", cfg.train_vocab}};
}

// The fingerprint keys both trainers share (what a checkpoint must match to be resumed).
template <typename Config>
nlohmann::json common_fingerprint(const Config& cfg, int64_t total_steps, int threads, const FeatureData& data) {
  nlohmann::json f = shared_config_keys(cfg);
  f.update({{"total_steps", total_steps},
            {"threads", threads},
            {"rows", data.n_rows()},
            {"sequences", data.n_sequences()},
            {"target_sha256", data.target_sha256}});
  return f;
}

// The metadata keys both trainers share (docs/training.md). result: the run's steps, train_rows, heldout_rows and
// wall_s; n_held: held-out sequences; history: the epochs as JSON.
template <typename Config, typename Result>
nlohmann::json common_metadata(const char* format, const Config& cfg, const FeatureData& data, const Result& result,
                               int n_held, double train_vocab_coverage, int n_epochs, int threads,
                               nlohmann::json history) {
  nlohmann::json m = shared_config_keys(cfg);
  m.update({{"format", format},
            {"target_sha256", data.target_sha256},
            {"target_model", cfg.model_path},
            {"feature", data.feature},
            {"hidden_size", data.hidden_size},
            {"vocab_size", data.vocab_size},
            {"data_files", data_files_json(cfg.data_files)},
            {"train_sequences", data.n_sequences() - n_held},
            {"heldout_sequences", n_held},
            {"train_rows", result.train_rows},
            {"heldout_rows", result.heldout_rows},
            {"train_vocab_coverage", train_vocab_coverage},
            {"steps", result.steps},
            {"epochs", n_epochs},
            {"threads", threads},
            {"history", std::move(history)},
            {"wall_s", result.wall_s}});
  return m;
}

// A weight of the target (weights.output, weights.tok_embeddings: V x H rows of any dtype, quantized rows
// dequantized) as row-major f32; throws one line naming the model file and `what` ("an LM head") when it is
// missing or not V x H (config.vocab_size x config.dim).
std::vector<float> weight_f32(const LoadedModel& model, const WeightTensor& t, const char* what);

// Rows `ids` of m (V x H, row-major) gathered into rows (ids.size() x H), and column: each token id's row there
// (-1 outside). ids must be distinct, ascending and in [0, V): else one line naming `what` ("a training vocabulary").
struct GatheredRows {
  std::vector<float> rows;
  std::vector<int32_t> column;
};
GatheredRows gather_rows(const std::vector<float>& m, int V, int H, const std::vector<int32_t>& ids, const char* what);

// A training checkpoint to resume from: the file and its "specdec_checkpoint" metadata (JSON text). Throws one
// line naming path when there is no file or no such metadata ("not <kind> training checkpoint", kind e.g.
// "a Medusa").
struct CheckpointFile {
  std::shared_ptr<SafetensorsFile> file;
  std::string metadata;
};
CheckpointFile open_checkpoint(const std::string& path, const char* kind);

}  // namespace specdec::train
