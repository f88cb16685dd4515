// The batched decode loop: a scheduler over SequenceDecoders (core/speculative/decoder.h), the per-sequence
// step speculative_decode runs, with every step's blocks verified in one forward_batch.
#include "core/speculative/batch_decoder.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/error.h"

namespace specdec {

namespace {
// Runs f; an Error it throws comes back as one line naming the request.
template <class F>
void naming_request(int ticket, uint64_t id, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    throw Error("request " + std::to_string(ticket) + " (id " + std::to_string(id) + "): " + e.what());
  }
}
}  // namespace

struct BatchDecoder::Sequence {
  int ticket = 0;
  BatchRequest req;  // kept while in flight: the drafter may refer to its prompt
  std::unique_ptr<Drafter> drafter;
  std::unique_ptr<SequenceDecoder> seq;
  int64_t last_verified = -1;  // the batch step that last verified it: who waited longest goes first
};

BatchDecoder::BatchDecoder(Model& target, BatchLimits limits) : target_(target), limits_(limits) {
  SPECDEC_CHECK(limits.max_sequences >= 1, "max_sequences >= 1 (sequences in flight), got ", limits.max_sequences);
  SPECDEC_CHECK(limits.max_tokens_per_step >= 1, "max_tokens_per_step >= 1 (tokens verified per step), got ",
                limits.max_tokens_per_step);
}

BatchDecoder::~BatchDecoder() = default;

int BatchDecoder::submit(BatchRequest req) {
  const int ticket = static_cast<int>(results_.size());
  const bool has_drafter = static_cast<bool>(req.make_drafter);
  naming_request(ticket, req.opts.request, [&] {
    SPECDEC_CHECK(req.rule != nullptr, "an acceptance rule");
    SequenceDecoder::check(target_, has_drafter, *req.rule, static_cast<int>(req.prompt.size()), req.opts);
    const int largest = 1 + (has_drafter ? req.opts.k : 0);
    SPECDEC_CHECK(largest <= limits_.max_tokens_per_step,
                  "blocks of at most max_tokens_per_step = ", limits_.max_tokens_per_step,
                  " tokens, got k = ", req.opts.k, " (blocks of up to ", largest, ")");
  });
  results_.emplace_back();
  finished_.push_back(0);
  queue_.emplace_back(ticket, std::move(req));
  return ticket;
}

bool BatchDecoder::finished(int ticket) const {
  SPECDEC_CHECK(ticket >= 0 && ticket < static_cast<int>(finished_.size()), "a ticket in 0..",
                static_cast<int>(finished_.size()) - 1, ", got ", ticket);
  return finished_[ticket] != 0;
}

DecodeResult BatchDecoder::take_result(int ticket) {
  SPECDEC_CHECK(finished(ticket), "a finished request, got ticket ", ticket, " still queued or in flight");
  return std::move(results_[ticket]);
}

void BatchDecoder::retire(Sequence& s) {
  results_[s.ticket] = s.seq->take_result();
  finished_[s.ticket] = 1;
}

void BatchDecoder::admit() {
  while (!queue_.empty() && static_cast<int>(active_.size()) < limits_.max_sequences) {
    auto s = std::make_unique<Sequence>();
    s->ticket = queue_.front().first;
    s->req = std::move(queue_.front().second);
    queue_.pop_front();
    // Joins just behind every sequence that is already waiting for room.
    s->last_verified = static_cast<int64_t>(steps_.size()) - 1;
    naming_request(s->ticket, s->req.opts.request, [&] {
      if (s->req.make_drafter) {
        s->drafter = s->req.make_drafter();
        SPECDEC_CHECK(s->drafter != nullptr, "a drafter from make_drafter (empty make_drafter = AR), got none");
      }
      s->seq = std::make_unique<SequenceDecoder>(target_, s->drafter.get(), *s->req.rule, s->req.prompt, s->req.opts,
                                                 s->req.on_tokens);
    });
    if (s->seq->done())  // nothing to generate (max_new_tokens = 0): leaves without a step
      retire(*s);
    else
      active_.push_back(std::move(s));
  }
}

void BatchDecoder::plan(int batch_size) {
  std::vector<JointModel> models(active_.size());
  std::vector<char> joint(active_.size(), 0);
  const CostTable* costs = nullptr;
  bool one_table = true;
  for (size_t i = 0; i < active_.size(); ++i) {
    joint[i] = active_[i]->seq->joint_model(models[i]);
    if (!joint[i]) continue;
    if (costs != nullptr && models[i].costs != costs) one_table = false;
    costs = models[i].costs;
  }
  // Sequences with no joint model decide alone; so does everyone when the joint ones disagree on the table.
  for (size_t i = 0; i < active_.size(); ++i)
    if (!joint[i] || !one_table) active_[i]->seq->plan_step(batch_size);
  if (costs == nullptr || !one_table) return;

  std::vector<PlanMember> members(active_.size());
  std::vector<std::vector<double>> means(active_.size());  // what each expects to emit is computed from
  bool exploring = false;
  double cap = 1;  // the tightest explore_cap of the exploring members
  for (size_t i = 0; i < active_.size(); ++i) {
    SequenceDecoder& seq = *active_[i]->seq;
    PlanMember& m = members[i];
    m.context_len = seq.context_len();
    if (joint[i]) {
      m.drafter = models[i].drafter;
      m.a = std::move(models[i].a);
      if (!models[i].a_mean.empty()) {
        exploring = true;
        cap = std::min(cap, models[i].explore_cap);
      }
      means[i] = models[i].a_mean.empty() ? m.a : std::move(models[i].a_mean);
      m.k_hi = std::min({models[i].k_max, seq.k_limit(), static_cast<int>(m.a.size())});
      m.backlog = models[i].backlog;
      m.remaining = models[i].remaining;
      m.depth = models[i].depth;
    } else {
      m.k_lo = m.k_hi = seq.max_block() - 1;  // decided: counts with its tokens, as one expected token
    }
  }
  BatchPlan p;
  if (exploring) {
    std::vector<PlanMember> safe = members;
    for (size_t i = 0; i < safe.size(); ++i)
      if (joint[i]) safe[i].a = means[i];
    p = plan_batch_explore(*costs, members, safe, batch_size, cap);
  } else {
    p = plan_batch(*costs, members, batch_size);
  }
  for (size_t i = 0; i < active_.size(); ++i)
    if (joint[i]) active_[i]->seq->apply_plan(p.k[i], expected_emitted(means[i], members[i].depth, p.k[i]));
}

// Every sequence of the batch drafts: those whose drafters share a batch key (Drafter::batch_key) propose in
// one propose_batch per key, the others alone. A group's time is shared equally among its members' records.
std::vector<ForwardRequest> BatchDecoder::draft(std::span<Sequence* const> batch) {
  const size_t n = batch.size();
  std::vector<int> budget(n);
  std::vector<DraftProposal> props(n);
  std::vector<double> draft_us(n, 0.0);
  std::vector<char> done(n, 0);
  for (size_t i = 0; i < n; ++i) budget[i] = batch[i]->seq->begin_draft();
  std::vector<Drafter*> group;
  std::vector<int> group_budget;
  std::vector<size_t> members;
  for (size_t i = 0; i < n; ++i) {
    if (done[i] || budget[i] == 0) continue;
    Drafter* d = batch[i]->seq->drafter();
    const void* key = d->batch_key();
    members.assign(1, i);
    if (key != nullptr)
      for (size_t j = i + 1; j < n; ++j)
        if (!done[j] && budget[j] > 0 && batch[j]->seq->drafter()->batch_key() == key) members.push_back(j);
    const auto t0 = std::chrono::steady_clock::now();
    if (members.size() == 1) {
      props[i] = d->propose(budget[i]);
    } else {
      group.clear();
      group_budget.clear();
      for (const size_t m : members) {
        group.push_back(batch[m]->seq->drafter());
        group_budget.push_back(budget[m]);
      }
      std::vector<DraftProposal> out(members.size());
      d->propose_batch(group, group_budget, out);
      for (size_t g = 0; g < members.size(); ++g) props[members[g]] = std::move(out[g]);
    }
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    for (const size_t m : members) {
      draft_us[m] = us / static_cast<double>(members.size());
      done[m] = 1;
    }
  }
  std::vector<ForwardRequest> reqs;
  reqs.reserve(n);
  for (size_t i = 0; i < n; ++i) reqs.push_back(batch[i]->seq->end_draft(std::move(props[i]), draft_us[i]));
  return reqs;
}

bool BatchDecoder::step() {
  admit();
  if (active_.empty()) return false;

  BatchStepRecord rec;
  rec.step = static_cast<int32_t>(steps_.size());
  rec.n_in_flight = static_cast<int32_t>(active_.size());
  rec.n_queued = static_cast<int32_t>(queue_.size());

  // Each sequence's policy decides its draft length first, with the sequences in flight as the batch size
  // (who fits is known only once the blocks are): a sequence left waiting keeps its decision for the next step.
  // Policies that plan jointly (cost_model plan = batch) are planned together, after the others.
  plan(rec.n_in_flight);

  // Room is reserved for each sequence's largest block before its drafter proposes, so every proposal made
  // is verified in this step (a drafter is never asked twice for one step).
  std::vector<Sequence*> order;
  for (auto& s : active_) order.push_back(s.get());
  std::stable_sort(order.begin(), order.end(),
                   [](const Sequence* a, const Sequence* b) { return a->last_verified < b->last_verified; });
  std::vector<Sequence*> batch;
  int reserved = 0;
  for (Sequence* s : order)
    if (reserved + s->seq->max_block() <= limits_.max_tokens_per_step) {
      reserved += s->seq->max_block();
      batch.push_back(s);
    }

  std::vector<KVCache*> caches;
  std::vector<ForwardRequest> reqs = draft(batch);
  for (Sequence* s : batch) caches.push_back(&s->seq->cache());
  out_.resize(batch.size());
  const auto t0 = std::chrono::steady_clock::now();
  target_.forward_batch(caches, reqs, std::span<ForwardResult>(out_.data(), batch.size()));
  rec.t_forward_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();

  for (size_t b = 0; b < batch.size(); ++b) {
    Sequence& s = *batch[b];
    s.seq->finish(out_[b], rec.t_forward_us);
    s.last_verified = rec.step;
    const StepRecord& sr = s.seq->result().steps.back();
    rec.tickets.push_back(s.ticket);
    rec.seq_steps.push_back(sr.step);
    rec.n_tokens += 1 + sr.n_proposed;
    rec.n_drafted += sr.n_proposed;
    rec.n_accepted += sr.n_accepted;
    rec.n_emitted += sr.n_emitted;
  }
  rec.n_sequences = static_cast<int32_t>(batch.size());
  steps_.push_back(std::move(rec));

  std::erase_if(active_, [this](std::unique_ptr<Sequence>& s) {
    if (!s->seq->done()) return false;
    retire(*s);
    return true;
  });
  return true;
}

BatchResult batch_decode(Model& target, std::vector<BatchRequest> requests, const BatchLimits& limits) {
  BatchDecoder dec(target, limits);
  for (auto& r : requests) dec.submit(std::move(r));
  while (dec.step()) {
  }
  BatchResult res;
  for (int t = 0; t < static_cast<int>(requests.size()); ++t) res.results.push_back(dec.take_result(t));
  res.steps = dec.steps();
  return res;
}

}  // namespace specdec
