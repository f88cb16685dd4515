// SpecStats (stats.h): counts and the figures derived from them; definitions in docs/metrics.md.
#include "core/speculative/stats.h"

#include <algorithm>
#include <limits>

#include "core/speculative/decoder.h"

namespace specdec {
namespace {

double ratio(double num, double den) { return den > 0 ? num / den : std::numeric_limits<double>::quiet_NaN(); }

int64_t at(const std::vector<int64_t>& v, int i) {
  return i >= 1 && i <= static_cast<int>(v.size()) ? v[static_cast<size_t>(i - 1)] : 0;
}

void bump(std::vector<int64_t>& v, int upto) {  // v[0..upto) += 1
  if (upto <= 0) return;
  if (static_cast<int>(v.size()) < upto) v.resize(static_cast<size_t>(upto), 0);
  for (int i = 0; i < upto; ++i) ++v[static_cast<size_t>(i)];
}

}  // namespace

bool draft_below_path(const StepRecord& s) {
  if (s.nodes.empty()) return s.max_depth > s.n_accepted;
  // The accepted path's last node (depth n_accepted), -1 for the root when nothing was accepted.
  int32_t end = -1;
  for (const auto& n : s.nodes)
    if (n.accepted && n.depth == s.n_accepted) end = n.node;
  if (s.n_accepted > 0 && end < 0) return s.max_depth > s.n_accepted;  // flags not logged: as a chain
  for (const auto& n : s.nodes)
    if (n.depth == s.n_accepted + 1 && n.parent == end) return true;
  return false;
}

void SpecStats::add_step(int32_t n_proposed, int32_t n_accepted, int32_t n_emitted, int32_t max_depth, bool below) {
  ++steps_;
  emitted_ += n_emitted;
  drafted_ += n_proposed;
  accepted_ += n_accepted;
  depth_ += max_depth;
  draft_steps_ += n_proposed > 0 ? 1 : 0;
  const int reach = n_accepted + (below ? 1 : 0);
  const int width = std::max({max_depth, reach, static_cast<int>(proposed_at_.size())});
  for (auto* v : {&proposed_at_, &accepted_at_, &reached_at_}) v->resize(static_cast<size_t>(width), 0);
  bump(proposed_at_, max_depth);
  bump(accepted_at_, n_accepted);
  bump(reached_at_, reach);
}

void SpecStats::add(const StepRecord& s) {
  add_step(s.n_proposed, s.n_accepted, s.n_emitted, s.max_depth, draft_below_path(s));
}

void SpecStats::add(std::span<const StepRecord> steps) {
  for (const auto& s : steps) add(s);
}

SpecStats& SpecStats::operator+=(const SpecStats& o) {
  steps_ += o.steps_;
  emitted_ += o.emitted_;
  drafted_ += o.drafted_;
  accepted_ += o.accepted_;
  depth_ += o.depth_;
  draft_steps_ += o.draft_steps_;
  const size_t width = std::max(proposed_at_.size(), o.proposed_at_.size());
  auto add_vec = [&](std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    a.resize(width, 0);
    for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
  };
  add_vec(proposed_at_, o.proposed_at_);
  add_vec(accepted_at_, o.accepted_at_);
  add_vec(reached_at_, o.reached_at_);
  return *this;
}

int64_t SpecStats::proposed_at(int i) const { return at(proposed_at_, i); }
int64_t SpecStats::accepted_at(int i) const { return at(accepted_at_, i); }
int64_t SpecStats::reached_at(int i) const { return at(reached_at_, i); }

double SpecStats::tau() const { return ratio(static_cast<double>(emitted_), static_cast<double>(steps_)); }
double SpecStats::tau_no_bonus() const { return tau() - 1.0; }
double SpecStats::acc_rate() const { return ratio(static_cast<double>(accepted_), static_cast<double>(drafted_)); }
double SpecStats::depth_rate() const { return ratio(static_cast<double>(accepted_), static_cast<double>(depth_)); }
double SpecStats::p_uncond(int i) const {
  return ratio(static_cast<double>(accepted_at(i)), static_cast<double>(proposed_at(i)));
}
double SpecStats::p_cond(int i) const {
  return ratio(static_cast<double>(accepted_at(i)), static_cast<double>(reached_at(i)));
}

double SpecStats::specbench_mat() const {
  return ratio(static_cast<double>(accepted_ + steps_), static_cast<double>(steps_));
}
double SpecStats::vllm_acceptance_rate() const { return acc_rate(); }
double SpecStats::vllm_mean_acceptance_length() const {
  return 1.0 + ratio(static_cast<double>(accepted_), static_cast<double>(draft_steps_));
}
double SpecStats::vllm_position_rate(int i) const {
  return ratio(static_cast<double>(accepted_at(i)), static_cast<double>(draft_steps_));
}
double SpecStats::llamacpp_accept() const { return acc_rate(); }
double SpecStats::sglang_accept_length() const { return tau(); }

}  // namespace specdec
