// The Medusa heads' trainer: soft-label distillation of the target's next-token distributions into K heads
// over the features of `specdec collect` (FeatureData), on the CPU with Eigen (float32, multi-threaded
// GEMMs), AdamW + warm-up/cosine + clipping (drafters/train/optim.h), held-out loss and top-i accuracies per
// head each epoch, periodic checkpoints and a bit-identical --resume. docs/training.md defines the loss.
// Optionally (train_vocab = N) the training loss runs over the N most frequent label ids only, which cuts
// both LM-head GEMMs by V / N; held-out evaluation always runs over the full vocabulary.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/model/loader.h"
#include "drafters/medusa/heads.h"
#include "drafters/train/features.h"
#include "drafters/train/trainer_common.h"

namespace specdec::medusa {

constexpr int kTopAccuracies = 10;  // accuracy_topk holds top-1 .. top-10 per head

// A training data file as the metadata records it (sha256 empty when not computed).
using DataFileInfo = train::DataFileInfo;

struct MedusaTrainConfig {
  int n_heads = 4;
  int n_layers = 1;
  int epochs = 1;                  // passes over the training rows (ignored when steps > 0)
  int64_t steps = 0;               // > 0: exactly this many optimiser steps
  int batch = 128;                 // rows per step
  float lr = 1e-3f;                // peak learning rate
  float min_lr = 0.0f;             // the cosine's floor
  int64_t warmup = 0;              // linear warm-up steps
  float weight_decay = 0.0f;       // on the block matrices (not the biases)
  float clip = 1.0f;               // global gradient norm limit (<= 0: no clipping)
  float init_scale = 0.0f;         // 0: zero blocks (heads start as the target's next-token prediction)
  uint64_t seed = 0;               // the held-out split, the row order, the initial weights
  int threads = 0;                 // Eigen / OpenMP threads; 0 = as configured (OMP_NUM_THREADS or all cores)
  double heldout_fraction = 0.05;  // of the sequences
  bool response_only = false;      // train and evaluate on rows whose label row is a response row only
  int64_t checkpoint_every = 0;    // steps; 0 = no periodic checkpoints
  std::string checkpoint_path;     // where checkpoints go (required when checkpoint_every > 0 or resuming)
  // 0: the training loss over the full vocabulary. N in [topk, V]: over the training vocabulary S, the N ids
  // most frequent among the training label rows' top-k ids (select_train_vocabulary); evaluation stays full.
  int train_vocab = 0;
  // Recorded in the metadata only:
  std::string model_path;
  std::vector<DataFileInfo> data_files;
};

// Held-out (or training) figures of one head.
struct HeadMetrics {
  int64_t rows = 0;                           // rows with a label for this head
  double loss = 0.0;                          // mean soft cross-entropy (nats)
  std::array<double, kTopAccuracies> topk{};  // topk[i-1] = P(the target's argmax is among the head's i best)
};

struct EpochReport {
  int epoch = 0;                     // 1-based; 0 = before training (the initial heads; held-out figures only)
  int64_t step = 0;                  // optimiser steps done at its end
  std::vector<HeadMetrics> train;    // running figures over the epoch's batches (loss and top-1 only)
  std::vector<HeadMetrics> heldout;  // on the held-out sequences after the epoch
  // What the training figures are over: train_vocab ids (0: the full vocabulary) holding this fraction of
  // the training label mass (select_train_vocabulary). The held-out figures are always over the full one.
  int train_vocab = 0;
  double train_vocab_coverage = 1.0;
};

struct TrainCallbacks {
  // After every optimiser step: steps done, total steps, the batch's rows, its loss (the sum over heads of
  // their mean losses) and the learning rate the step used.
  std::function<void(int64_t step, int64_t total_steps, int64_t rows, double loss, float lr)> on_step;
  std::function<void(const EpochReport&)> on_epoch;
  std::function<void(const std::string& path, int64_t step)> on_checkpoint;
};

struct MedusaTrainResult {
  MedusaHeads heads;                // with metadata_json (docs/training.md): save_medusa_heads writes it
  std::vector<EpochReport> epochs;  // epoch 0 (before training), then one per epoch
  int64_t steps = 0;
  int64_t train_rows = 0, heldout_rows = 0;
  double wall_s = 0.0;       // of this invocation (a resumed run: since the resume)
  int64_t rows_stepped = 0;  // rows in this invocation's optimiser steps (each counted once, all heads)
  double step_s = 0.0;       // seconds in those steps (evaluation and checkpoints excluded)
};

// The training vocabulary of train_vocab = n: the n token ids that occur most often among the top-k ids of
// the label rows of `rows` (each row r + k + 1 that a head k < n_heads trains on at a row r of `rows`,
// counted once; ties: the lower id), ascending, and its coverage: the mean over those label rows of the
// renormalised top-k probability mass inside it. rows: positions as train_medusa's training rows are.
struct TrainVocabulary {
  std::vector<int32_t> ids;
  double coverage = 1.0;
};
TrainVocabulary select_train_vocabulary(const train::FeatureData& data, const std::vector<int64_t>& rows, int n_heads,
                                        bool response_only, int n);

// The target's LM head (weights.output, V x H of any dtype: quantized rows dequantized) as row-major f32.
std::vector<float> lm_head_f32(const LoadedModel& model);

// Trains heads on data with the frozen LM head lm_head (V x H f32, data.vocab_size x data.hidden_size).
// resume: continue from cfg.checkpoint_path (same data and config; a mismatch is an error naming the key),
// giving the same weights bit for bit as an uninterrupted run with the same thread count.
// Throws specdec::Error for inconsistent data, a bad config value or a checkpoint of another run.
MedusaTrainResult train_medusa(const train::FeatureData& data, const std::vector<float>& lm_head,
                               const MedusaTrainConfig& cfg, const TrainCallbacks& callbacks = {}, bool resume = false);

// Held-out style figures of heads over the given rows (each row a position t; a head counts the rows
// that have a label for it), in chunks of `batch` rows.
std::vector<HeadMetrics> evaluate_medusa(const MedusaHeads& heads, const train::FeatureData& data,
                                         const std::vector<float>& lm_head, const std::vector<int64_t>& rows,
                                         bool response_only, int batch);

// The mean soft cross-entropy of head k over those of `rows` that have a label for it (0 when none), and
// with grad_w / grad_b (laid out like heads.w / heads.b, zero-filled by the caller) its gradient with respect
// to head k's blocks added in: exactly what a training step computes (gradient checks use it). train_ids:
// empty for the full vocabulary, else a training vocabulary S (ascending, distinct): the loss over S with
// each row's top-k restricted to S and renormalised, rows without label mass in S skipped.
double medusa_head_loss(const MedusaHeads& heads, int k, const train::FeatureData& data,
                        const std::vector<float>& lm_head, const std::vector<int64_t>& rows, bool response_only,
                        std::vector<std::vector<float>>* grad_w = nullptr,
                        std::vector<std::vector<float>>* grad_b = nullptr, const std::vector<int32_t>& train_ids = {});

// ---- shared with the EAGLE trainer (drafters/eagle/train_eagle.cpp) -------------------------------------

// splitmix64 of (seed, stream): independent, reproducible seeds (the split, each epoch's order) from one seed.
uint64_t seed_stream(uint64_t seed, uint64_t stream);
// Fisher-Yates driven by splitmix64 from seed: the same order with every standard library.
void shuffle_indices(std::vector<int64_t>& v, uint64_t seed);
// Throws a one-line specdec::Error when data is inconsistent (offsets, array sizes, top-k ids and probabilities).
void check_feature_data(const train::FeatureData& data);
// The held-out split: 1 for the sequences held out, round(fraction x n) of them (at least one when fraction > 0,
// never all), chosen by seed_stream(seed, 1).
std::vector<uint8_t> heldout_sequences(int n_sequences, double fraction, uint64_t seed);

// Appends more's sequences to into (the first call may pass an empty into); throws naming `source` when the
// hidden size, vocabulary, top-k, feature or target differ.
void append_features(train::FeatureData& into, const train::FeatureData& more, const std::string& source);

}  // namespace specdec::medusa
