// The batched decode loop with continuous batching: up to max_sequences requests in flight, each with its own
// drafter, acceptance rule, KV cache and RNG stream (seed, request, its own step counter). Every step drafts
// for each sequence, verifies all their blocks (ragged chains and trees with their masks) in one
// Model::forward_batch, and finishes each sequence's step with the same code as speculative_decode
// (SequenceDecoder), so a request's DecodeResult equals speculative_decode's for it alone, bit for bit
// (timing fields aside): the forward is batch-invariant. docs/batching.md describes the loop and its limits.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/model/model.h"
#include "core/speculative/acceptance.h"
#include "core/speculative/decoder.h"
#include "core/speculative/drafter.h"

namespace specdec {

struct BatchRequest {
  std::vector<TokenId> prompt;
  DecodeOptions opts;                    // opts.request: the request id of its RNG streams
  const AcceptanceRule* rule = nullptr;  // required; not owned, outlives the decoder
  // Makes the request's drafter when it joins (destroyed when it leaves); empty = AR. A drafter made with
  // DrafterEnv::request = opts.request draws what it draws under speculative_decode.
  std::function<std::unique_ptr<Drafter>()> make_drafter;
  std::function<void(std::span<const TokenId>)> on_tokens;  // its emitted tokens, step by step; may be empty
};

struct BatchLimits {
  int max_sequences = 8;          // sequences in flight (joined and not yet done)
  int max_tokens_per_step = 256;  // tokens one forward_batch verifies: the sum of its blocks
};

// One batched step: one forward_batch over the blocks of the sequences it verified.
struct BatchStepRecord {
  int32_t step = 0;
  int32_t n_sequences = 0;                               // sequences verified in this step
  int32_t n_tokens = 0;                                  // tokens verified: the sum over them of 1 + n_proposed
  int32_t n_drafted = 0, n_accepted = 0, n_emitted = 0;  // sums of their StepRecords' fields
  int32_t n_in_flight = 0;         // sequences in flight at the step (verified, or waiting for room in it)
  int32_t n_queued = 0;            // requests not yet joined, after this step's admissions
  std::vector<int32_t> tickets;    // the verified sequences (submit() tickets), in block order
  std::vector<int32_t> seq_steps;  // per ticket: the index of this step among its own StepRecords
  double t_forward_us = 0;
};

class BatchDecoder {
 public:
  // Throws unless max_sequences >= 1 and max_tokens_per_step >= 1.
  BatchDecoder(Model& target, BatchLimits limits);
  ~BatchDecoder();

  // Queues a request and returns its ticket (0, 1, ... in submit order). Checks it now, as speculative_decode
  // would, and that its largest block (1 + k with a drafter, 1 without) fits max_tokens_per_step; the
  // one-line error names the ticket and the request id.
  int submit(BatchRequest req);
  // One step: admits queued requests (in submit order, each prefilled by a forward of its own) while fewer
  // than max_sequences are in flight; asks each sequence's policy (opts.policy, one per sequence, made when it
  // joins) for its draft length with the sequences in flight as the batch size (SequenceDecoder::plan_step: a
  // sequence left waiting keeps its decision), the sequences whose policies plan jointly (cost_model plan =
  // batch) together by plan_batch (core/speculative/policy.h); then takes the sequences in flight, those that waited
  // longest first, whose largest blocks fit together in max_tokens_per_step (the others wait for the next step); drafts
  // for each, verifies every block in one forward_batch, finishes each step; done sequences leave.
  // Returns false, doing nothing, when no request is queued or in flight.
  bool step();
  bool idle() const { return active_.empty() && queue_.empty(); }
  bool finished(int ticket) const;
  DecodeResult take_result(int ticket);  // requires finished(ticket); once
  const std::vector<BatchStepRecord>& steps() const { return steps_; }
  int in_flight() const { return static_cast<int>(active_.size()); }

 private:
  struct Sequence;
  void admit();
  void plan(int batch_size);  // every sequence's draft length for the step (policies; joint plans together)
  void retire(Sequence& s);
  // The batch's proposals (batched per Drafter::batch_key) and their verification forwards, in batch order.
  std::vector<ForwardRequest> draft(std::span<Sequence* const> batch);

  Model& target_;
  BatchLimits limits_;
  std::deque<std::pair<int, BatchRequest>> queue_;
  std::vector<std::unique_ptr<Sequence>> active_;  // in join order
  std::vector<DecodeResult> results_;              // by ticket
  std::vector<uint8_t> finished_;
  std::vector<BatchStepRecord> steps_;
  std::vector<ForwardResult> out_;  // one per verified block, reused
};

struct BatchResult {
  std::vector<DecodeResult> results;  // in request order
  std::vector<BatchStepRecord> steps;
};

// Submits every request (all checked before any is decoded), steps until idle, and returns the results.
BatchResult batch_decode(Model& target, std::vector<BatchRequest> requests, const BatchLimits& limits);

}  // namespace specdec
