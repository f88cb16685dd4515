// AdamW, the warm-up + cosine schedule and global-norm clipping (optim.h). Plain loops: the parameter
// counts of feature drafters (a few million) make the optimiser a small fraction of a training step.
#include "drafters/train/optim.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace specdec::train {

float LrSchedule::at(int64_t step) const {
  if (step < warmup_steps)
    return static_cast<float>(static_cast<double>(peak_lr) * static_cast<double>(step + 1) /
                              static_cast<double>(warmup_steps));
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double p = std::min(1.0, static_cast<double>(step - warmup_steps + 1) / static_cast<double>(decay_steps));
  return static_cast<float>(min_lr +
                            (static_cast<double>(peak_lr) - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
}

double global_grad_norm(std::span<const ParamSpan> params) {
  double sum = 0.0;
  for (const ParamSpan& p : params)
    for (size_t i = 0; i < p.size; ++i) sum += static_cast<double>(p.grad[i]) * p.grad[i];
  return std::sqrt(sum);
}

double clip_grad_norm(std::span<const ParamSpan> params, float max_norm) {
  const double norm = global_grad_norm(params);
  if (max_norm > 0.f && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (const ParamSpan& p : params)
      for (size_t i = 0; i < p.size; ++i) p.grad[i] *= scale;
  }
  return norm;
}

AdamW::AdamW(std::vector<ParamSpan> params, AdamWConfig cfg) : params_(std::move(params)), cfg_(cfg) {
  SPECDEC_CHECK(cfg_.beta1 >= 0.f && cfg_.beta1 < 1.f && cfg_.beta2 >= 0.f && cfg_.beta2 < 1.f,
                "AdamW betas in [0, 1), got beta1 = ", cfg_.beta1, ", beta2 = ", cfg_.beta2);
  SPECDEC_CHECK(cfg_.eps > 0.f, "AdamW eps > 0, got ", cfg_.eps);
  SPECDEC_CHECK(cfg_.weight_decay >= 0.f, "AdamW weight_decay >= 0, got ", cfg_.weight_decay);
  for (const ParamSpan& p : params_) {
    state_.m.emplace_back(p.size, 0.f);
    state_.v.emplace_back(p.size, 0.f);
  }
}

void AdamW::step(float lr) {
  const int64_t t = ++state_.step;
  const float b1 = cfg_.beta1, b2 = cfg_.beta2;
  const double c1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(t));
  const double c2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(t));
  const float inv_c1 = static_cast<float>(1.0 / c1);
  const float inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(c2));
  for (size_t s = 0; s < params_.size(); ++s) {
    const ParamSpan& p = params_[s];
    float* m = state_.m[s].data();
    float* v = state_.v[s].data();
    const float decay = p.decay ? lr * cfg_.weight_decay : 0.f;
    for (size_t i = 0; i < p.size; ++i) {
      const float g = p.grad[i];
      m[i] = b1 * m[i] + (1.f - b1) * g;
      v[i] = b2 * v[i] + (1.f - b2) * g * g;
      const float denom = std::sqrt(v[i]) * inv_sqrt_c2 + cfg_.eps;
      p.value[i] -= decay * p.value[i];
      p.value[i] -= lr * (m[i] * inv_c1) / denom;
    }
  }
}

void AdamW::zero_grad() {
  for (const ParamSpan& p : params_) std::fill(p.grad, p.grad + p.size, 0.f);
}

void AdamW::load_state(AdamWState state) {
  SPECDEC_CHECK(state.m.size() == params_.size() && state.v.size() == params_.size(), "optimiser state for ",
                params_.size(), " parameter tensors, got ", state.m.size(), " first and ", state.v.size(),
                " second moments");
  for (size_t s = 0; s < params_.size(); ++s)
    SPECDEC_CHECK(state.m[s].size() == params_[s].size && state.v[s].size() == params_[s].size,
                  "optimiser state of parameter tensor ", s, " with ", params_[s].size, " values, got ",
                  state.m[s].size(), " and ", state.v[s].size());
  SPECDEC_CHECK(state.step >= 0, "optimiser step count >= 0, got ", state.step);
  state_ = std::move(state);
}

}  // namespace specdec::train
