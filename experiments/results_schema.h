// The one field list of each record type of the HDF5 results log (docs/hdf5-schema.md): requests, steps,
// draft_tokens, outputs. Everything that names a column is derived from these tables: the HDF5 compound
// types and their packing (results_hdf5.h), the journal's encoding (results_journal.cpp), diff_runs
// (results_read.cpp), the JSON column list stored in every log's `columns` attribute and in
// experiments/report/schema.json, which the Python report loads instead of restating names.
// Adding a column: a member of the row struct (results_log.h), one line here, its producer (the runner /
// ResultsLog::append) and docs/hdf5-schema.md; then regenerate schema.json (test_results_log says how).
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>

#include "experiments/results_log.h"

namespace specdec::results {

// A request's slice of output_tokens (the outputs table).
struct OutputRow {
  int64_t request_id = 0;
  int64_t offset = 0;
  int32_t length = 0;
  bool operator==(const OutputRow&) const = default;
};

namespace schema {

// One column: its name, the row member that holds it, the schema version that added it, whether it is a
// measurement (or a condition of one: host, load) that differs between two runs of the same work
// (diff_runs with ignore_timings skips those), its meaning, and for a string its fixed size in bytes.
template <class Row, class T>
struct Field {
  using row_type = Row;
  using value_type = T;
  const char* name;
  T Row::*member;
  int since;
  bool timing;
  const char* doc;
  int bytes;  // on disk: strings their fixed length (null-terminated), numbers sizeof, bools 1 (int8)
};

template <class Row, class T>
constexpr Field<Row, T> field(const char* name, T Row::*member, int since, bool timing, const char* doc,
                              int string_bytes = 0) {
  static_assert(std::is_same_v<T, std::string> || std::is_arithmetic_v<T>);
  const int bytes = std::is_same_v<T, std::string> ? string_bytes
                    : std::is_same_v<T, bool>      ? 1
                                                   : static_cast<int>(sizeof(T));
  return {name, member, since, timing, doc, bytes};
}

template <class Row>
struct Table;

template <>
struct Table<RequestRow> {
  static constexpr const char* name = "requests";
  static constexpr auto fields = std::make_tuple(
      field("request_id", &RequestRow::request_id, 1, false,
            "same id in every run for the same prompt and repeat (pairs runs with the AR baseline)"),
      field("prompt_id", &RequestRow::prompt_id, 1, false, "<set>:<id>, e.g. spec_bench:81", kPromptIdBytes),
      field("category", &RequestRow::category, 1, false, "prompt category", kCategoryBytes),
      field("repeat", &RequestRow::repeat, 1, false, "repeat index"),
      field("prompt_tokens", &RequestRow::prompt_tokens, 1, false, "tokens of the prompt"),
      field("new_tokens", &RequestRow::new_tokens, 1, false, "generated tokens (= the sum of the steps' n_emitted)"),
      field("wall_time_s", &RequestRow::wall_time_s, 1, true, "prefill_s + decode_s"),
      field("prefill_s", &RequestRow::prefill_s, 1, true,
            "the shared, measured prefill of the prompt, plus this run's copy of it and its drafter's begin()"),
      field("decode_s", &RequestRow::decode_s, 1, true, "everything after the prefill"),
      field("steps", &RequestRow::steps, 1, false, "target verification passes"),
      field("tau", &RequestRow::tau, 1, false, "new_tokens / steps: tokens emitted per target pass"),
      field("stopped", &RequestRow::stopped, 1, false, "ended on an end-of-generation token"),
      field("invocation", &RequestRow::invocation, 2, true,
            "id of the process (specdec run invocation) that timed this request", kInvocationBytes),
      field("host", &RequestRow::host, 2, true, "host name of the machine that timed it", kHostBytes),
      field("host_cores", &RequestRow::host_cores, 2, true, "logical CPUs of that machine"),
      field("load_avg", &RequestRow::load_avg, 2, true,
            "the machine's 1-minute load average when the request finished (-1: unknown)"),
      field("threads", &RequestRow::threads, 2, true, "CPU threads the decode used (OpenMP)"),
      field("device", &RequestRow::device, 2, true, "where the target ran: cpu, or the GPU's name", kDeviceBytes),
      field("logged_at", &RequestRow::logged_at, 2, true,
            "when it was timed: UTC seconds since the epoch when the request finished (0: unknown)"),
      field("arrival_s", &RequestRow::arrival_s, 3, true,
            "batched runs: when the request arrived, seconds since the run's start (closed loop: 0); -1 unbatched"));
};

template <>
struct Table<StepRow> {
  static constexpr const char* name = "steps";
  static constexpr auto fields = std::make_tuple(
      field("request_id", &StepRow::request_id, 1, false, "the request"),
      field("step", &StepRow::step, 1, false, "0-based index of the pass in the request"),
      field("n_proposed", &StepRow::n_proposed, 1, false, "draft tokens proposed (every node of a tree)"),
      field("n_accepted", &StepRow::n_accepted, 1, false, "draft tokens accepted (the accepted path's length)"),
      field("n_emitted", &StepRow::n_emitted, 2, false,
            "tokens the step appended to the output: n_accepted + 1 less what a stop token or max_new_tokens cut"),
      field("tree_nodes", &StepRow::tree_nodes, 1, false, "nodes of a branching proposal; 0 for a chain"),
      field("max_depth", &StepRow::max_depth, 1, false, "depth of the proposal (a chain's length)"),
      field("t_draft_us", &StepRow::t_draft_us, 1, true, "drafter time of the step: propose + accept"),
      field("t_verify_us", &StepRow::t_verify_us, 1, true,
            "target forward + acceptance + cache compaction of the step"),
      field("context_len", &StepRow::context_len, 1, false, "tokens in the target's cache before the pass"),
      // batch_size and batch_step count as timings: under an open-loop load which sequences share a step
      // depends on when the requests arrived relative to the steps (closed loop: always the same).
      field("batch_size", &StepRow::batch_size, 1, true, "sequences decoded together (1 without batching)"),
      field("k_policy", &StepRow::k_policy, 3, false,
            "the speculation policy's draft length for the step ([run] policy); -1 = no policy"),
      field("t_forward_us", &StepRow::t_forward_us, 3, true,
            "the target forward alone (part of t_verify_us; in a batched run the whole batch's forward_batch)"),
      field("batch_step", &StepRow::batch_step, 3, true,
            "batched runs: index of the batched step (one forward_batch) that verified it; -1 unbatched"),
      field("t_emit_s", &StepRow::t_emit_s, 3, true,
            "batched runs: when the step's tokens were emitted, seconds since the run's start; -1 unbatched"),
      field("k_expected", &StepRow::k_expected, 4, false,
            "E[emitted | k_policy]: the tokens the policy expected the step to emit, from its acceptance estimates "
            "when it decided (cost_model); -1 = no model or no policy"));
};

template <>
struct Table<DraftTokenRow> {
  static constexpr const char* name = "draft_tokens";
  static constexpr auto fields = std::make_tuple(
      field("request_id", &DraftTokenRow::request_id, 1, false, "the request"),
      field("step", &DraftTokenRow::step, 1, false, "the step"),
      field("node", &DraftTokenRow::node, 1, false, "0-based index in the proposal"),
      field("parent", &DraftTokenRow::parent, 1, false, "parent node; -1 = child of the last accepted token"),
      field("depth", &DraftTokenRow::depth, 1, false, "1 = first draft position"),
      field("token", &DraftTokenRow::token, 1, false, "token id"),
      field("p_target", &DraftTokenRow::p_target, 1, false,
            "target probability of the token at its parent (after sampling filters; float32 in schema 1)"),
      field("q_draft", &DraftTokenRow::q_draft, 1, false, "draft probability of the token (float32 in schema 1)"),
      field("u", &DraftTokenRow::u, 1, false,
            "the uniform draw of the rule's test (-1: no draw; 53 bits since schema 2)"),
      field("visited", &DraftTokenRow::visited, 1, false, "the rule examined this node"),
      field("accepted", &DraftTokenRow::accepted, 1, false, "on the accepted path"),
      field("p_test", &DraftTokenRow::p_test, 2, false,
            "the target-side value the rule tested: greedy 1/0 (argmax or not), speculative the residual r(token), "
            "typical p_target"),
      field("threshold", &DraftTokenRow::threshold, 2, false,
            "typical: min(epsilon, delta * exp(-H(p))); -1 otherwise"),
      field("passed", &DraftTokenRow::passed, 2, false,
            "the test's verdict: greedy p_test == 1, speculative u < min(1, p_test / q_draft), typical p_test > "
            "threshold"));
};

template <>
struct Table<OutputRow> {
  static constexpr const char* name = "outputs";
  static constexpr auto fields =
      std::make_tuple(field("request_id", &OutputRow::request_id, 1, false, "the request"),
                      field("offset", &OutputRow::offset, 1, false, "first index of its tokens in output_tokens"),
                      field("length", &OutputRow::length, 1, false, "number of tokens"));
};

// Calls fn(field) for each column of Row, in order.
template <class Row, class Fn>
constexpr void for_each_field(Fn&& fn) {
  std::apply([&](const auto&... f) { (fn(f), ...); }, Table<Row>::fields);
}

}  // namespace schema

// The column list of every table as JSON (name, type, bytes, since, timing, doc per column), what each log
// stores in its root `columns` attribute and experiments/report/schema.json holds.
std::string schema_json();

}  // namespace specdec::results
