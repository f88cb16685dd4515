// Progress of a sweep: on a terminal one updating line (bar, requests done / total, tokens/s, elapsed,
// ETA); otherwise (a log file, a batch job) plain lines, one per finished request and a heartbeat while a
// long request runs; nothing with --quiet. Units are (run, request) pairs.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace specdec::experiments {

class Progress {
 public:
  enum class Mode { kQuiet, kTerminal, kPlain };
  // kQuiet when quiet, else kTerminal when `out` is a terminal, else kPlain.
  static Mode detect(bool quiet, FILE* out = stdout);

  // total: (run, request) pairs of this invocation; already_done: those finished before (--resume).
  // unit: what pair_done counts, shown as a rate ("tok": tokens/s; the trainer counts "rows").
  Progress(Mode mode, int64_t total, int64_t already_done, FILE* out = stdout, std::string unit = "tok");

  // One (run, request) pair finished, having generated `tokens` (units); label names it (e.g. "ngram_k4_t0 gsm8k:3").
  void pair_done(int64_t tokens, const std::string& label);
  // Every run of one request finished (a plain line in kPlain mode).
  void request_done(const std::string& label);
  // A line of text that must not be overwritten by the bar (notes, warnings).
  void note(const std::string& text);
  // Ends the bar's line (kTerminal); prints the final counts (kPlain).
  void finish();

  int64_t done() const { return done_; }
  double elapsed_s() const;
  // "1:02:03" or "2:03"
  static std::string format_duration(double seconds);

 private:
  std::string status() const;  // "42/126 (33%), 1234.5 tok/s, elapsed 0:12, ETA 0:24"
  void draw(bool force);

  Mode mode_;
  FILE* out_;
  int64_t total_, done_, done_at_start_;
  int64_t tokens_ = 0;
  std::string unit_;
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_draw_, last_line_;
  bool drawn_ = false;
};

}  // namespace specdec::experiments
