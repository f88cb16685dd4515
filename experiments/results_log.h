// The HDF5 results log (schema version 3, docs/hdf5-schema.md; versions 1 and 2 are read too): the runner writes it,
// `specdec report`, the notebooks and `specdec merge` read it. Every finished request is appended and flushed, so a run
// killed at any moment keeps every finished request; reopening for --resume drops the rows of an
// unfinished request and reports which requests are done.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/speculative/decoder.h"

namespace specdec::results {

inline constexpr int kSchemaVersion = 4;        // what this build writes
inline constexpr int kOldestSchemaVersion = 1;  // the oldest it reads (merge upgrades a file to kSchemaVersion)
// Fixed-length string fields of the requests table (bytes, null-terminated, so one less is usable).
inline constexpr int kPromptIdBytes = 64;
inline constexpr int kCategoryBytes = 32;
inline constexpr int kInvocationBytes = 40;
inline constexpr int kHostBytes = 64;
inline constexpr int kDeviceBytes = 64;

// When and under what conditions a request was timed (the requests table's invocation columns). One per
// process: every request a `specdec run` invocation logs carries the same invocation id, so rows that two
// processes (a run and its --resume) timed can be told apart, and speedup pairs only rows of one.
struct TimingContext {
  std::string invocation;  // unique per process, e.g. "20260102T030405Z-host-1234-5f3a"
  std::string host;        // host name
  int32_t host_cores = 0;  // logical CPUs
  double load_avg = -1;    // 1-minute load average when the request finished (-1: unknown)
  int32_t threads = 0;     // CPU threads the decode used
  std::string device;      // "cpu" or the GPU's name
  double logged_at = 0;    // when the request was timed: UTC seconds since the epoch at its end
};
// This process's context (invocation id made once per process), with the load average and time read now.
TimingContext current_timing_context(const std::string& device, int threads);

// Root attributes, written once when the file is created.
struct FileInfo {
  std::string specdec_version;  // git sha
  std::string config_text;      // the full resolved config (INI text)
  std::string host_json;        // {"cpu": ..., "cores": N, "gpu": ..., "driver": ..., "cuda": ..., "cublas": ...}
  std::string seeds;            // e.g. "0,1,2"
  std::string start_time;       // ISO 8601 UTC
};

// One configuration of the sweep: /runs/<name>/, its attributes are `attrs` (all strings).
struct RunInfo {
  std::string name;                          // unique; e.g. "ngram_k4_t0" or "ar_t0"
  std::map<std::string, std::string> attrs;  // drafter, drafter_options, k, temperature, top_k, top_p, rule,
                                             // lossless (0/1), baseline (0/1, the AR run), target, ...
};

// Where a step of a request stood in a batched run (the steps table's batch_step, batch_size, t_emit_s).
struct StepLoad {
  int32_t batch_step = -1;  // the index of the batched step (one forward_batch) that verified it
  int32_t batch_size = 1;   // sequences verified in that forward
  double t_emit_s = -1;     // when its tokens were emitted: seconds since the run's start
};

// One finished request of one run.
struct RequestRecord {
  int64_t request_id = 0;  // unique within the run; the same id in every run for the same prompt+repeat
  std::string prompt_id;   // e.g. "spec_bench:81"
  std::string category;    // e.g. "summarization"
  int32_t repeat = 0;
  int32_t prompt_tokens = 0;
  double wall_time_s = 0, prefill_s = 0, decode_s = 0;
  bool stopped = false;                  // ended on an end-of-generation token
  const DecodeResult* result = nullptr;  // tokens + steps (+ per-node draft records)
  int32_t batch_size = 1;                // sequences decoded together with this one (the steps table's batch_size)
  TimingContext timing;                  // when / where it was timed
  double arrival_s = -1;                 // batched runs: when it arrived, seconds since the run's start
  std::vector<StepLoad> step_load;       // batched runs: per step of result->steps; empty = unbatched
};

class ResultsLog {
 public:
  // Creates `path` (error if it exists, unless resume) or, with resume = true, reopens it: the file's
  // config_text must equal info.config_text (else a one-line error naming the file), rows of requests
  // that never finished are dropped, and finished() lists what is done. resume = true on a missing file
  // creates it. A new file is built as <path>.partial and renamed to <path> at the first append (or
  // close), so a kill before any request leaves no file. Not thread-safe (HDF5 is serial here): one
  // thread uses a log at a time; one writer per file (--resume assumes the previous writer is dead).
  static std::unique_ptr<ResultsLog> open(const std::string& path, const FileInfo& info, bool resume);
  // Closes the file (clean close: the file needs no recovery); errors in the close are swallowed here,
  // call close() to see them.
  virtual ~ResultsLog() = default;

  // Creates /runs/<name> if absent (same attributes required when it exists).
  virtual void ensure_run(const RunInfo& run) = 0;
  // ensure_run for every run of the sweep at once. Call it before the first append: groups and tables
  // can only be created outside HDF5's SWMR mode, so a run created after appends costs a close/reopen
  // and a short window in which a kill is not covered by SWMR's crash consistency.
  virtual void declare_runs(const std::vector<RunInfo>& runs) = 0;
  // Appends the request to the run's requests, steps, draft_tokens, outputs tables and flushes.
  // The run must exist (ensure_run); request_id must be >= 0 and not yet finished in the run; prompt_id
  // and category must fit their fixed-length fields; rec.result must be set.
  virtual void append(const std::string& run, const RequestRecord& rec) = 0;
  // request ids already finished in a run (after open(resume=true), or appended since).
  virtual std::set<int64_t> finished(const std::string& run) const = 0;
  // Names of the runs in the file, in creation order.
  virtual std::vector<std::string> runs() const = 0;
  virtual const std::string& path() const = 0;
  // Flushes and closes the file; later calls throw. Idempotent.
  virtual void close() = 0;
};

// Joins shard files into one: root attributes from the first (config_text must match across inputs),
// runs merged by name, duplicate (run, request_id) pairs are an error. Throws naming the offending file.
// `output` must not exist. Each run's requests are written in request_id order (rows of one request stay
// together and in their original order), so merging shards equals a single file written in id order.
void merge(const std::vector<std::string>& inputs, const std::string& output);

// Rebuilds or completes `path` from its write-ahead journal (<path>.journal, kept while a run writes the
// file) without running anything: what --resume does first, for a file whose writer was killed. A file
// that is damaged or disagrees with the journal is kept as <path>.damaged and a new one written. The file
// is then closed cleanly (its journal removed). Returns the number of requests the file holds. Throws,
// naming the file, when there is no journal.
int64_t repair(const std::string& path);

// ---- reading (report, tests, the runner's resume/merge checks) ----------------------------------------
// Rows as stored. Each row type's columns are listed once, in experiments/results_schema.h (names,
// versions, meanings); docs/hdf5-schema.md documents them.
struct RequestRow {
  int64_t request_id = 0;
  std::string prompt_id, category;
  int32_t repeat = 0, prompt_tokens = 0, new_tokens = 0;
  double wall_time_s = 0, prefill_s = 0, decode_s = 0;
  int32_t steps = 0;
  double tau = 0;
  bool stopped = false;
  // schema 2: the timing context ("" / 0 / -1 in a version 1 log)
  std::string invocation, host;
  int32_t host_cores = 0;
  double load_avg = -1;
  int32_t threads = 0;
  std::string device;
  double logged_at = 0;
  double arrival_s = -1;  // schema 3; -1 in an unbatched run or an older log
  bool operator==(const RequestRow&) const = default;
};
struct StepRow {
  int64_t request_id = 0;
  int32_t step = 0, n_proposed = 0, n_accepted = 0;
  int32_t n_emitted = 0;  // schema 2; a version 1 log reads as n_accepted + 1, the last step of a request as
                          // what its new_tokens leave (a stop or the length limit only ever cuts the last step)
  int32_t tree_nodes = 0, max_depth = 0;
  double t_draft_us = 0, t_verify_us = 0;
  int32_t context_len = 0, batch_size = 0;
  // schema 3 (older logs: the defaults)
  int32_t k_policy = -1;
  double t_forward_us = -1;
  int32_t batch_step = -1;
  double t_emit_s = -1;
  double k_expected = -1;  // schema 4 (older logs: -1)
  bool operator==(const StepRow&) const = default;
};
struct DraftTokenRow {
  int64_t request_id = 0;
  int32_t step = 0, node = 0, parent = -1, depth = 1;
  TokenId token = 0;
  double p_target = 0, q_draft = 0, u = -1;
  bool visited = false, accepted = false;
  double p_test = 0, threshold = -1;  // schema 2 (docs/verification.md: how each verdict follows)
  bool passed = false;
  bool operator==(const DraftTokenRow&) const = default;
};

// Everything of one run that belongs to finished requests (rows of an unfinished request at the tail of
// a killed run's tables are left out, as --resume would drop them). Rows in file order.
struct RunData {
  RunInfo info;
  std::vector<RequestRow> requests;
  std::vector<StepRow> steps;
  std::vector<DraftTokenRow> draft_tokens;
  std::map<int64_t, std::vector<TokenId>> outputs;  // request_id -> generated tokens
};

// Reading never modifies the file, and works on a file whose writer was killed (or is still writing).
// Schema versions kOldestSchemaVersion..kSchemaVersion are read; columns a version lacks read as the
// defaults above.
FileInfo read_info(const std::string& path);
int read_schema_version(const std::string& path);
std::vector<RunData> read_all(const std::string& path);  // runs in creation order

// The first difference between two files' contents ("" when equal): runs matched by name (order
// ignored), requests matched by request_id (order ignored), each request's steps, draft tokens and output
// compared in order. ignore_timings skips the columns results_schema.h marks as timings (wall_time_s,
// prefill_s, decode_s, t_draft_us, t_verify_us and the timing context: invocation, host, load, ...; since schema 3
// also arrival_s, t_forward_us, t_emit_s and a step's batch_size and batch_step, which under an open-loop load
// depend on when requests arrived relative to the steps).
std::string diff_runs(const std::vector<RunData>& a, const std::vector<RunData>& b, bool ignore_timings);

namespace testing {
// Test hook: the next append() in this process ends the process with _exit(0) at the given point, leaving
// the file exactly as a kill there would (no close, no flush). For deterministic recovery tests only.
enum class CrashPoint { kNone, kAfterJournal, kBeforeFirstFlush, kAfterFirstFlush };
void crash_in_next_append(CrashPoint where);
}  // namespace testing

}  // namespace specdec::results
