// SpecStats: the one accumulator behind every speculative-decoding figure specdec prints (the decoder's
// DecodeResult summary, `specdec generate`, the runner's summary; experiments/report/specdec_report.py
// computes the same definitions from the HDF5 log, and a test compares the two). docs/metrics.md states
// each definition and, for the peers' figures, where the peer defines it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace specdec {

struct StepRecord;

class SpecStats {
 public:
  // One target verification pass. n_proposed: draft tokens proposed (every node of a tree); n_accepted:
  // draft tokens accepted (the accepted path's length); n_emitted: tokens the step appended to the output
  // (n_accepted + 1 less what a stop token or max_new_tokens cut); max_depth: the proposal's depth (a
  // chain's length); draft_below_path: the proposal had a draft token directly below the end of the
  // accepted path (a chain: max_depth > n_accepted), i.e. position n_accepted + 1 was tried.
  void add_step(int32_t n_proposed, int32_t n_accepted, int32_t n_emitted, int32_t max_depth, bool draft_below_path);
  // The same from the decoder's record (draft_below_path from its nodes; a record without nodes is a chain).
  void add(const StepRecord& s);
  void add(std::span<const StepRecord> steps);
  SpecStats& operator+=(const SpecStats& o);

  // ---- counts -------------------------------------------------------------------------------------
  int64_t steps() const { return steps_; }              // target verification passes
  int64_t emitted() const { return emitted_; }          // tokens appended to outputs
  int64_t drafted() const { return drafted_; }          // draft tokens proposed (all tree nodes)
  int64_t accepted() const { return accepted_; }        // draft tokens accepted
  int64_t depth() const { return depth_; }              // sum of the proposals' depths
  int64_t draft_steps() const { return draft_steps_; }  // steps that proposed at least one token
  int max_position() const { return static_cast<int>(proposed_at_.size()); }
  int64_t proposed_at(int i) const;  // steps whose proposal reached depth i (i = 1..)
  int64_t accepted_at(int i) const;  // steps whose accepted path reached depth i
  int64_t reached_at(int i) const;  // steps whose accepted path reached i - 1 and had a draft token at depth i below it

  // ---- specdec's figures (NaN when the denominator is 0) ----------------------------------------------
  double tau() const;            // emitted / steps: tokens per target pass (AR: 1)
  double tau_no_bonus() const;   // tau - 1: tokens per pass beyond the target's own one
  double acc_rate() const;       // accepted / drafted (every proposed token, every tree node)
  double depth_rate() const;     // accepted / depth: the share of the proposal's depth the accepted path covered
  double p_uncond(int i) const;  // accepted_at(i) / proposed_at(i)
  double p_cond(int i) const;    // accepted_at(i) / reached_at(i)

  // ---- peers' headline figures, from the same events, as each peer defines it (docs/metrics.md) -------
  double specbench_mat() const;                // Spec-Bench / EAGLE #MAT: (accepted + steps) / steps, no stop cut
  double vllm_acceptance_rate() const;         // accepted / drafted
  double vllm_mean_acceptance_length() const;  // 1 + accepted / draft_steps
  double vllm_position_rate(int i) const;      // accepted_at(i) / draft_steps
  double llamacpp_accept() const;              // accepted / drafted (n_accept / n_drafted), as a fraction
  double sglang_accept_length() const;         // emitted / steps (completion_tokens / spec_verify_ct)

 private:
  int64_t steps_ = 0, emitted_ = 0, drafted_ = 0, accepted_ = 0, depth_ = 0, draft_steps_ = 0;
  std::vector<int64_t> proposed_at_, accepted_at_, reached_at_;  // index i - 1
};

// Whether a step's proposal had a draft token directly below the end of its accepted path (see add_step).
bool draft_below_path(const StepRecord& s);

}  // namespace specdec
