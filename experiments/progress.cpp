// The progress display of `specdec run`.
#include "experiments/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace specdec::experiments {
namespace {
using Clock = std::chrono::steady_clock;
constexpr double kRedrawS = 0.1;      // terminal: redraw at most ten times a second
constexpr double kHeartbeatS = 10.0;  // plain: a line at least this often while pairs finish
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Progress::Mode Progress::detect(bool quiet, FILE* out) {
  if (quiet) return Mode::kQuiet;
  return isatty(fileno(out)) ? Mode::kTerminal : Mode::kPlain;
}

Progress::Progress(Mode mode, int64_t total, int64_t already_done, FILE* out, std::string unit)
    : mode_(mode),
      out_(out),
      total_(total),
      done_(already_done),
      done_at_start_(already_done),
      unit_(std::move(unit)),
      start_(Clock::now()),
      last_draw_(start_),
      last_line_(start_) {
  if (mode_ == Mode::kPlain && already_done > 0)
    std::fprintf(out_, "progress: %lld/%lld already finished (resumed)\n", static_cast<long long>(already_done),
                 static_cast<long long>(total_));
  draw(true);
}

double Progress::elapsed_s() const { return seconds(Clock::now() - start_); }

std::string Progress::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string Progress::status() const {
  const double el = elapsed_s();
  const int64_t now_done = done_ - done_at_start_;
  const double pct = total_ ? 100.0 * done_ / total_ : 100.0;
  // ETA from this session's rate (pairs resumed from the file took no time here).
  const std::string eta = now_done > 0 ? format_duration(el / now_done * (total_ - done_)) : "?";
  char buf[160];
  std::snprintf(buf, sizeof buf, "%lld/%lld (%.0f%%), %.1f %s/s, elapsed %s, ETA %s", static_cast<long long>(done_),
                static_cast<long long>(total_), pct, el > 0 ? tokens_ / el : 0.0, unit_.c_str(),
                format_duration(el).c_str(), eta.c_str());
  return buf;
}

void Progress::draw(bool force) {
  if (mode_ != Mode::kTerminal) return;
  const auto now = Clock::now();
  if (!force && seconds(now - last_draw_) < kRedrawS) return;
  last_draw_ = now;
  constexpr int kWidth = 24;
  const int filled = total_ ? static_cast<int>(kWidth * done_ / total_) : kWidth;
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::string label = label_.size() > 40 ? label_.substr(0, 37) + "..." : label_;
  // \r returns to the line's start, \x1b[K clears what a longer previous line left.
  std::fprintf(out_, "\r[%s] %s  %s\x1b[K", bar.c_str(), status().c_str(), label.c_str());
  std::fflush(out_);
  drawn_ = true;
}

void Progress::pair_done(int64_t tokens, const std::string& label) {
  ++done_;
  tokens_ += tokens;
  label_ = label;
  if (mode_ == Mode::kPlain && seconds(Clock::now() - last_line_) >= kHeartbeatS) {
    std::fprintf(out_, "progress: %s  (%s)\n", status().c_str(), label.c_str());
    std::fflush(out_);
    last_line_ = Clock::now();
  }
  draw(done_ == total_);
}

void Progress::request_done(const std::string& label) {
  if (mode_ == Mode::kPlain) {
    std::fprintf(out_, "progress: %s  done %s\n", status().c_str(), label.c_str());
    std::fflush(out_);
    last_line_ = Clock::now();
  }
  draw(false);
}

void Progress::note(const std::string& text) {
  if (mode_ == Mode::kTerminal && drawn_) std::fprintf(out_, "\r\x1b[K");
  if (mode_ != Mode::kQuiet) {
    std::fprintf(out_, "%s\n", text.c_str());
    std::fflush(out_);
  }
  draw(true);
}

void Progress::finish() {
  if (mode_ == Mode::kTerminal) {
    label_.clear();
    draw(true);
    std::fprintf(out_, "\n");
  } else if (mode_ == Mode::kPlain) {
    std::fprintf(out_, "progress: %s  finished\n", status().c_str());
  }
  std::fflush(out_);
}

}  // namespace specdec::experiments
