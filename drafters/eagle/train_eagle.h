// The EAGLE layer's trainer (eagle.h's layer): over the features of `specdec collect`, each sequence of T rows
// gives T - 1 pairs (e = the target's embedding of tokens[i+1], f = hidden[i]) at RoPE position i + 1, read
// causally; pair i's output is trained towards hidden[i+1] (Smooth-L1, beta 1, mean over H; weight w_reg) and
// its LM readout towards the target's top-k distribution at row i + 1 (soft cross-entropy; weight w_ce), as
// EAGLE does. Backpropagation by hand through the whole layer, AdamW + warm-up/cosine + clipping
// (drafters/train/optim.h), held-out loss parts and EAGLE's "accuracy at step d" (d = 1..4) each epoch,
// periodic checkpoints, a bit-identical --resume. On the CPU with Eigen, float32, deterministic per thread count.
// docs/training.md has the definitions.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/model/loader.h"
#include "drafters/eagle/eagle.h"
#include "drafters/medusa/train_medusa.h"
#include "drafters/train/features.h"

namespace specdec::eagle {

constexpr int kEagleDepths = 4;  // held-out accuracy at draft depth 1 .. 4

struct EagleTrainConfig {
  int epochs = 1;             // passes over the training pairs (ignored when steps > 0)
  int64_t steps = 0;          // > 0: exactly this many optimiser steps
  int batch = 4;              // chunks (whole sequences, or max_len pieces of longer ones) per step
  int max_len = 256;          // pairs per chunk: longer sequences are cut into pieces read separately
  float lr = 5e-4f;           // peak learning rate
  float min_lr = 0.0f;        // the cosine's floor
  int64_t warmup = 0;         // linear warm-up steps
  float weight_decay = 0.0f;  // on the matrices (not fc.bias, post_norm)
  float clip = 0.5f;          // global gradient norm limit (<= 0: none); EAGLE clips at 0.5
  float init_scale = 0.02f;   // init_eagle_weights' scale
  float w_reg = 1.0f;         // weight of the feature regression (Smooth-L1)
  float w_ce = 0.1f;          // weight of the soft cross-entropy of the readout
  float noise = 0.0f;         // uniform noise in [-noise, noise] added to the training input features
  // EAGLE-3's training-time test: 1 = train the pairs read with the target's features only (EAGLE-1); n > 1 =
  // also depths 1 .. n - 1, where each pair reads the layer's own previous output as the drafter does (its
  // attention: the committed pairs and its own chain), depth j's loss weighted by ttt_decay^j. Costs ~n x.
  int ttt_steps = 1;
  float ttt_decay = 0.8f;
  uint64_t seed = 0;               // the held-out split, the chunk order, the initial weights, the noise
  int threads = 0;                 // Eigen / OpenMP threads; 0 = as configured
  double heldout_fraction = 0.05;  // of the sequences
  int64_t checkpoint_every = 0;    // steps; 0 = no periodic checkpoints
  std::string checkpoint_path;     // required when checkpoint_every > 0 or resuming
  // 0: the training cross-entropy over the full vocabulary; N in [topk, V]: over the N ids most frequent among
  // the training label rows' top-k (medusa::select_train_vocabulary), the top-k restricted and renormalised.
  int train_vocab = 0;
  // 0: the drafter reads out the whole vocabulary; N: the weights carry draft_ids = the N most frequent label
  // ids (chosen like train_vocab's), and the held-out accuracies are over that readout, as the drafter's.
  int draft_vocab = 0;
  // Recorded in the metadata only:
  std::string model_path;
  std::vector<medusa::DataFileInfo> data_files;
};

struct EagleMetrics {
  int64_t rows = 0;   // pairs with a target
  double reg = 0.0;   // mean Smooth-L1 (mean over H per pair)
  double ce = 0.0;    // mean soft cross-entropy (nats) at depth 1 (held-out: over the drafter's readout)
  double loss = 0.0;  // w_reg * reg + w_ce * ce
  // acc[d-1]: P(argmax of the readout at depth d == the target's argmax), over acc_rows[d-1] pairs (training
  // figures: depth 1 only, over the training vocabulary).
  std::array<double, kEagleDepths> acc{};
  std::array<int64_t, kEagleDepths> acc_rows{};
  // Held-out only. chain[d-1]: P(the argmax is right at every depth 1..d) over the same starts: a greedy chain's
  // unconditional acceptance of position d (docs/metrics.md's P(d)) on data whose tokens are the target's own
  // greedy ones (collect's self mode). resp_*: acc and chain over the starts in the responses only (the label
  // row of depth 1 is the prompt's last row or later), where a drafter drafts; resp_rows[d-1] starts.
  std::array<double, kEagleDepths> chain{}, resp_acc{}, resp_chain{};
  std::array<int64_t, kEagleDepths> resp_rows{};
  // walk[d-1]: the decode loop's P(d) for a greedy chain of 4 on the responses (the target's own greedy text):
  // steps only at the starts a decode reaches (each step skips the tokens it accepted), over walk_rows[d-1]
  // such steps with a label at depth d. Lower than resp_chain, which weighs every start alike: a decode
  // spends more steps where drafts fail.
  std::array<double, kEagleDepths> walk{};
  std::array<int64_t, kEagleDepths> walk_rows{};
};

struct EagleEpochReport {
  int epoch = 0;         // 1-based; 0 = before training
  int64_t step = 0;      // optimiser steps done at its end
  EagleMetrics train;    // running figures over the epoch's steps
  EagleMetrics heldout;  // on the held-out sequences after the epoch
  int train_vocab = 0;
  double train_vocab_coverage = 1.0;
};

struct EagleTrainCallbacks {
  // After every step: steps done, total steps, the step's pairs, its loss and the learning rate it used.
  std::function<void(int64_t step, int64_t total_steps, int64_t rows, double loss, float lr)> on_step;
  std::function<void(const EagleEpochReport&)> on_epoch;
  std::function<void(const std::string& path, int64_t step)> on_checkpoint;
};

struct EagleTrainResult {
  EagleWeights weights;                  // with metadata_json (docs/training.md) and draft_ids (draft_vocab > 0)
  std::vector<EagleEpochReport> epochs;  // epoch 0 (before training), then one per epoch
  int64_t steps = 0;
  int64_t train_rows = 0, heldout_rows = 0;  // pairs
  double wall_s = 0.0;                       // of this invocation
  int64_t rows_stepped = 0;                  // pairs in this invocation's optimiser steps
  double step_s = 0.0;                       // seconds in those steps (evaluation and checkpoints excluded)
};

// A piece of one sequence read as a block: pairs i = first .. first + length - 1 (global row indices: pair i
// reads hidden[i] and tokens[i + 1], its targets are row i + 1), the first at RoPE position `position`.
struct EagleChunk {
  int64_t first = 0;
  int32_t length = 0;
  int32_t position = 0;
};

// The chunks of the given sequences: each sequence of T rows has T - 1 pairs, cut into pieces of at most
// max_len pairs, in order.
std::vector<EagleChunk> eagle_chunks(const train::FeatureData& data, std::span<const int> sequences, int max_len);

// The target's token embedding (weights.tok_embeddings, V x H of any dtype, quantized rows dequantized), f32.
std::vector<float> embedding_f32(const LoadedModel& model);

struct EagleLossOptions {
  float w_reg = 1.0f, w_ce = 0.1f;
  float noise = 0.0f;  // uniform noise on the input features, drawn from noise_seed per row
  uint64_t noise_seed = 0;
  std::vector<int32_t> train_ids;  // empty: the cross-entropy over all V ids; else over these (ascending)
  int ttt_steps = 1;               // depths trained (EagleTrainConfig::ttt_steps), their weights ttt_decay^j
  float ttt_decay = 0.8f;
};

struct EagleLossValue {
  double loss = 0.0, reg = 0.0, ce = 0.0;   // the means over the chunks' pairs (ce: over pairs with label mass)
  int64_t rows = 0, ce_rows = 0, hits = 0;  // hits: argmax of the readout (over train_ids) == the target's
};

// The training loss of the chunks' pairs (and, ttt_steps > 1, of their drafted depths: loss_impl in the .cpp says
// how each is weighted; the returned reg, ce and hits are depth 0's) with the frozen embedding (V x H) and LM head
// (V x H), and with grad
// (laid out like w, zero-filled by the caller) its gradient with respect to every trainable tensor added in:
// exactly what a training step computes. out (optional): the layer's output, sum of lengths x H, in chunk order.
EagleLossValue eagle_loss(const EagleWeights& w, const train::FeatureData& data, const std::vector<float>& embed,
                          const std::vector<float>& lm_head, std::span<const EagleChunk> chunks,
                          const EagleLossOptions& opt, EagleWeights* grad = nullptr, std::vector<float>* out = nullptr);

// Held-out figures over the chunks: reg, ce (depth 1) and the accuracy at depth d = 1..4, read with
// eagle_forward as the drafter reads: the chunk's true pairs in the cache, then for every start the layer's own
// predicted feature with the true next token (teacher-forced tokens), d - 1 times. The readout is w.draft_ids'
// rows when w has them, else all V; ce is over that readout too (the top-k restricted to it and renormalised,
// pairs without label mass there skipped), which keeps the evaluation's LM GEMM at the drafter's size.
EagleMetrics evaluate_eagle(const EagleWeights& w, const train::FeatureData& data, const std::vector<float>& embed,
                            const std::vector<float>& lm_head, std::span<const EagleChunk> chunks, float w_reg,
                            float w_ce);

// Trains the layer on data with the frozen embedding and LM head (both V x H f32). resume: continue from
// cfg.checkpoint_path (same data and config; a mismatch is an error naming the key), bit for bit the same
// weights as an uninterrupted run with the same thread count.
EagleTrainResult train_eagle(const train::FeatureData& data, const std::vector<float>& embed,
                             const std::vector<float>& lm_head, const EagleConfig& layer, const EagleTrainConfig& cfg,
                             const EagleTrainCallbacks& callbacks = {}, bool resume = false);

}  // namespace specdec::eagle
