// The optimiser of specdec's trainers: AdamW (decoupled weight decay, bias correction, as in Loshchilov &
// Hutter and torch.optim.AdamW), a learning-rate schedule (linear warm-up, then cosine decay to a floor)
// and global-norm gradient clipping. Parameters are spans of float values with their gradients; every
// operation is sequential per element with double-precision reductions, so results are deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace specdec::train {

// One trainable tensor: size values and their gradients (not owned). decay: weight decay applies to it
// (matrices yes, biases no, as is usual).
struct ParamSpan {
  float* value = nullptr;
  float* grad = nullptr;
  size_t size = 0;
  bool decay = true;
};

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: value -= lr * weight_decay * value, before the Adam step
};

// Learning rate of step s (0-based, the step about to be taken) of total_steps:
//   s < warmup_steps:  peak_lr * (s + 1) / warmup_steps                  (reaches peak_lr at s = warmup - 1)
//   otherwise:         min_lr + (peak_lr - min_lr) * (1 + cos(pi * p)) / 2,
//                      p = min(1, (s - warmup_steps + 1) / (total_steps - warmup_steps))  (min_lr at the last step)
struct LrSchedule {
  float peak_lr = 1e-3f;
  float min_lr = 0.0f;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  float at(int64_t step) const;
};

// sqrt(sum of squared gradients) over every span, accumulated in double in span order.
double global_grad_norm(std::span<const ParamSpan> params);

// Scales every gradient by max_norm / norm when the global norm exceeds max_norm (> 0; <= 0 disables
// clipping). Returns the norm before clipping.
double clip_grad_norm(std::span<const ParamSpan> params, float max_norm);

// The moments of AdamW and its step count: what a checkpoint keeps to resume bit-identically.
struct AdamWState {
  int64_t step = 0;                   // updates taken so far (bias correction uses step + 1 for the next)
  std::vector<std::vector<float>> m;  // first moments, one vector per parameter span
  std::vector<std::vector<float>> v;  // second moments
};

class AdamW {
 public:
  AdamW(std::vector<ParamSpan> params, AdamWConfig cfg);

  // One update of every parameter from its gradient with learning rate lr; state().step += 1.
  //   value -= lr * wd * value (decay spans only);  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
  //   value -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),  t = the new step count.
  void step(float lr);
  // Zeroes every gradient.
  void zero_grad();

  const std::vector<ParamSpan>& params() const { return params_; }
  const AdamWConfig& config() const { return cfg_; }
  const AdamWState& state() const { return state_; }
  // Replaces the state (from a checkpoint); throws specdec::Error when its shapes are not the
  // parameters' (span count or sizes).
  void load_state(AdamWState state);

 private:
  std::vector<ParamSpan> params_;
  AdamWConfig cfg_;
  AdamWState state_;
};

}  // namespace specdec::train
