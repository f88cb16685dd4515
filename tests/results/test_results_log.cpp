// The HDF5 results log: every field round-trips; resume lists finished requests and drops a partial one;
// a writer killed with SIGKILL at random moments (forked children, the real thing) leaves a readable file
// with every finished request intact; user mistakes give one-line errors naming the file; merge of shards
// equals one file written with all requests.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "core/error.h"
#include "experiments/results_journal.h"
#include "tests/results/results_fixtures.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"

using namespace specdec::test::results;
using specdec::DecodeResult;
namespace fs = std::filesystem;

namespace {

using specdec::test::error_or_empty;

std::string fresh(const std::string& name) {
  const auto p = specdec::test::scratch_dir("results_log") / name;
  for (const char* suffix : {"", ".journal", ".partial", ".damaged", ".lock"}) fs::remove(p.string() + suffix);
  return p.string();
}

// The error message of f(), "" when it does not throw.

const RunData* find_run(const std::vector<RunData>& runs, const std::string& name) {
  for (const auto& r : runs)
    if (r.info.name == name) return &r;
  return nullptr;
}

// Runs body in a forked child; returns its wait status. The child never returns into Catch.
template <typename F>
int in_child(F&& body) {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      std::_Exit(3);
    }
    std::_Exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

}  // namespace

TEST_CASE("two runs round-trip every field", "[results]") {
  const std::string path = fresh("roundtrip.h5");
  {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run(), ar_run()});
    for (int64_t id = 0; id < 6; ++id) {
      append_request(*log, spec_run().name, id);
      append_request(*log, ar_run().name, id, /*salt=*/1);
    }
    CHECK(log->finished(spec_run().name) == std::set<int64_t>{0, 1, 2, 3, 4, 5});
    CHECK(log->runs() == std::vector<std::string>{spec_run().name, ar_run().name});
    log->close();
  }
  const FileInfo info = read_info(path);
  const FileInfo want = file_info();
  CHECK(info.specdec_version == want.specdec_version);
  CHECK(info.config_text == want.config_text);
  CHECK(info.host_json == want.host_json);
  CHECK(info.seeds == want.seeds);
  CHECK(info.start_time == want.start_time);

  const auto runs = read_all(path);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].info.name == spec_run().name);  // creation order
  CHECK(runs[1].info.name == ar_run().name);
  const RunData a = expected_run(spec_run(), iota_ids(6)), b = expected_run(ar_run(), iota_ids(6), 1);
  CHECK(runs[0].info.attrs == a.info.attrs);
  CHECK(runs[0].requests == a.requests);
  CHECK(runs[0].steps == a.steps);
  CHECK(runs[0].draft_tokens == a.draft_tokens);
  CHECK(runs[0].outputs == a.outputs);
  CHECK(runs[1].requests == b.requests);
  CHECK(runs[1].steps == b.steps);
  CHECK(runs[1].draft_tokens == b.draft_tokens);
  CHECK(runs[1].outputs == b.outputs);
  CHECK(diff_runs(runs, {a, b}, false).empty());
  // diff_runs names the first difference; timings can be ignored.
  auto changed = runs;
  changed[1].steps[2].t_verify_us += 1;
  CHECK(diff_runs(runs, changed, true).empty());
  CHECK(diff_runs(runs, changed, false).find("t_verify_us") != std::string::npos);
  changed[1].draft_tokens[0].token += 1;
  CHECK(diff_runs(runs, changed, true).find("token") != std::string::npos);
}

TEST_CASE("an empty run, a run created after appends, and strings at their size limits", "[results]") {
  const std::string path = fresh("late_run.h5");
  RunInfo empty{"empty", {{"drafter", "none"}}};
  const std::string long_prompt(kPromptIdBytes - 1, 'p'), long_category(kCategoryBytes - 1, 'c');
  {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run(), empty});
    append_request(*log, spec_run().name, 0);
    log->ensure_run(ar_run());  // leaves SWMR, creates, goes back on the next append
    append_request(*log, ar_run().name, 7);
    append_request(*log, spec_run().name, 1);
    const DecodeResult res = make_result(2);
    RequestRecord rec = make_record(2, res);
    rec.prompt_id = long_prompt;
    rec.category = long_category;
    log->append(spec_run().name, rec);
  }  // the destructor closes
  const auto runs = read_all(path);
  REQUIRE(runs.size() == 3);
  CHECK(runs[1].info.name == "empty");
  CHECK(runs[1].requests.empty());
  CHECK(runs[1].outputs.empty());
  CHECK(diff_runs({runs[2]}, {expected_run(ar_run(), {7})}, false).empty());
  REQUIRE(runs[0].requests.size() == 3);
  CHECK(runs[0].requests[2].prompt_id == long_prompt);
  CHECK(runs[0].requests[2].category == long_category);
}

TEST_CASE("resume lists finished requests and continues the file", "[results]") {
  const std::string path = fresh("resume.h5");
  {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run(), ar_run()});
    for (int64_t id = 0; id < 5; ++id) append_request(*log, spec_run().name, id);
    append_request(*log, ar_run().name, 3);
  }
  {
    auto log = ResultsLog::open(path, file_info(), true);
    CHECK(log->finished(spec_run().name) == std::set<int64_t>{0, 1, 2, 3, 4});
    CHECK(log->finished(ar_run().name) == std::set<int64_t>{3});
    CHECK(log->finished("no_such_run").empty());
    log->declare_runs({spec_run(), ar_run()});  // same attributes: nothing to do
    append_request(*log, spec_run().name, 5);
    append_request(*log, ar_run().name, 0);
    const auto err = error_or_empty([&] { append_request(*log, spec_run().name, 2); });
    CHECK(err.find("request 2 of run 'ngram_k4_t0' is already recorded") != std::string::npos);
    append_request(*log, spec_run().name, 6);  // the log is still usable after a refused append
  }
  const auto runs = read_all(path);
  CHECK(diff_runs(runs, {expected_run(spec_run(), {0, 1, 2, 3, 4, 5, 6}), expected_run(ar_run(), {3, 0})}, false)
            .empty());
  // resume on a missing file starts one.
  const std::string path2 = fresh("resume_new.h5");
  auto log = ResultsLog::open(path2, file_info(), true);
  CHECK(log->runs().empty());
}

TEST_CASE("user mistakes give one-line errors naming the file", "[results]") {
  const std::string path = fresh("mistakes.h5");
  {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run()});
    append_request(*log, spec_run().name, 0);

    auto err = error_or_empty([&] { append_request(*log, "nope", 1); });
    CHECK(err.find("'nope'") != std::string::npos);
    CHECK(err.find(path) != std::string::npos);

    const DecodeResult res = make_result(1);
    RequestRecord rec = make_record(1, res);
    rec.prompt_id = std::string(kPromptIdBytes, 'x');
    err = error_or_empty([&] { log->append(spec_run().name, rec); });
    CHECK(err.find("prompt_id") != std::string::npos);
    CHECK(err.find("at most 63") != std::string::npos);
    rec = make_record(-1, res);
    CHECK(error_or_empty([&] { log->append(spec_run().name, rec); }).find("request_id must be >= 0") !=
          std::string::npos);
    rec = make_record(1, res);
    rec.result = nullptr;
    CHECK(!error_or_empty([&] { log->append(spec_run().name, rec); }).empty());

    RunInfo changed = spec_run();
    changed.attrs["k"] = "8";
    err = error_or_empty([&] { log->ensure_run(changed); });
    CHECK(err.find("k='4'") != std::string::npos);
    CHECK(err.find("k='8'") != std::string::npos);
    CHECK(!error_or_empty([&] { log->ensure_run({"a/b", {}}); }).empty());
    append_request(*log, spec_run().name, 1);  // none of these damaged the log
    log->close();
    CHECK(error_or_empty([&] { append_request(*log, spec_run().name, 2); }).find("is closed") != std::string::npos);
  }
  CHECK(read_all(path)[0].requests.size() == 2);

  // An existing file without --resume.
  auto err = error_or_empty([&] { ResultsLog::open(path, file_info(), false); });
  CHECK(err.find(path) != std::string::npos);
  CHECK(err.find("--resume") != std::string::npos);
  CHECK(err.find('\n') == std::string::npos);

  // --resume with another config.
  err = error_or_empty(
      [&] { ResultsLog::open(path, file_info("[model]\npath = other.bin\n\n[sweep]\nk = 1,4\n"), true); });
  CHECK(err.find(path) != std::string::npos);
  CHECK(err.find("different config") != std::string::npos);
  CHECK(err.find("line 2") != std::string::npos);
  CHECK(err.find('\n') == std::string::npos);
  CHECK(read_all(path)[0].requests.size() == 2);  // refused opens leave the file alone

  // Not a results log.
  const std::string junk = fresh("junk.h5");
  std::ofstream(junk) << "not hdf5";
  err = error_or_empty([&] { read_all(junk); });
  CHECK(err.find(junk) != std::string::npos);
  CHECK(err.find('\n') == std::string::npos);
  err = error_or_empty([&] { ResultsLog::open(junk, file_info(), true); });
  CHECK(err.find(junk) != std::string::npos);
  CHECK(error_or_empty([&] { read_info(fresh("missing.h5")); }).find("does not exist") != std::string::npos);
  CHECK(error_or_empty([&] {
          ResultsLog::open("/nonexistent_dir/x.h5", file_info(), false);
        }).find("/nonexistent_dir/x.h5") != std::string::npos);
}

namespace {

// A child that writes requests 0..2 of the spec run and 0 of the AR run, then dies inside the append of
// spec request 3 at `point` (as a kill there would leave the files).
void write_then_crash(const std::string& path, specdec::results::testing::CrashPoint point) {
  const int status = in_child([&] {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run(), ar_run()});
    for (int64_t id = 0; id < 3; ++id) append_request(*log, spec_run().name, id);
    append_request(*log, ar_run().name, 0);
    specdec::results::testing::crash_in_next_append(point);
    append_request(*log, spec_run().name, 3);
    std::_Exit(4);  // not reached
  });
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

}  // namespace

TEST_CASE("a request whose journal record is written survives any crash inside append", "[results][journal]") {
  using specdec::results::testing::CrashPoint;
  for (CrashPoint point : {CrashPoint::kAfterJournal, CrashPoint::kBeforeFirstFlush, CrashPoint::kAfterFirstFlush}) {
    CAPTURE(static_cast<int>(point));
    const std::string path = fresh("interrupted_journal.h5");
    write_then_crash(path, point);
    REQUIRE(fs::exists(path + ".journal"));
    // The HDF5 file as the crash left it holds exactly the requests it committed ...
    CHECK(diff_runs(read_all(path), {expected_run(spec_run(), {0, 1, 2}), expected_run(ar_run(), {0})}, false).empty());
    {  // ... and --resume completes request 3 from the journal.
      auto log = ResultsLog::open(path, file_info(), true);
      CHECK(log->finished(spec_run().name) == std::set<int64_t>{0, 1, 2, 3});
      append_request(*log, ar_run().name, 1);
    }
    CHECK(!fs::exists(path + ".journal"));  // a clean close removes it
    CHECK(diff_runs(read_all(path), {expected_run(spec_run(), {0, 1, 2, 3}), expected_run(ar_run(), {0, 1})}, false)
              .empty());
  }
}

TEST_CASE("without its journal, a request interrupted inside append is dropped on resume", "[results]") {
  using specdec::results::testing::CrashPoint;
  for (CrashPoint point : {CrashPoint::kBeforeFirstFlush, CrashPoint::kAfterFirstFlush}) {
    CAPTURE(static_cast<int>(point));
    const std::string path = fresh("interrupted.h5");
    write_then_crash(path, point);
    fs::remove(path + ".journal");  // as a file from before journals, or a lost journal: HDF5's own recovery

    // Readable as left by the crash, holding exactly the finished requests.
    CHECK(diff_runs(read_all(path), {expected_run(spec_run(), {0, 1, 2}), expected_run(ar_run(), {0})}, false).empty());
    {
      auto log = ResultsLog::open(path, file_info(), true);
      CHECK(log->finished(spec_run().name) == std::set<int64_t>{0, 1, 2});
      CHECK(fs::exists(path + ".journal"));                  // seeded from the file, so the rest of the run is covered
      append_request(*log, spec_run().name, 3, /*salt=*/2);  // other content than the lost attempt
    }
    // No leftover row of the first attempt: request 3 is exactly the second one.
    const auto runs = read_all(path);
    RunData want = expected_run(spec_run(), {0, 1, 2});
    const RunData again = expected_run(spec_run(), {3}, 2);
    want.requests.push_back(again.requests[0]);
    want.steps.insert(want.steps.end(), again.steps.begin(), again.steps.end());
    want.draft_tokens.insert(want.draft_tokens.end(), again.draft_tokens.begin(), again.draft_tokens.end());
    want.outputs[3] = again.outputs.at(3);
    const RunData* got = find_run(runs, spec_run().name);
    REQUIRE(got);
    CHECK(got->requests == want.requests);
    CHECK(got->steps == want.steps);
    CHECK(got->draft_tokens == want.draft_tokens);
    CHECK(got->outputs == want.outputs);
  }
}

TEST_CASE("a damaged file is kept aside and rebuilt from the journal, on --resume and by repair",
          "[results][journal]") {
  using specdec::results::testing::CrashPoint;
  const std::vector<RunData> want = {expected_run(spec_run(), {0, 1, 2, 3}), expected_run(ar_run(), {0})};
  // Damage: the second half of the file overwritten with garbage; the file cut in half; the file gone.
  for (int damage = 0; damage < 3; ++damage) {
    for (bool by_repair : {false, true}) {
      CAPTURE(damage, by_repair);
      const std::string path = fresh("damaged.h5");
      fs::remove(path + ".damaged");
      write_then_crash(path, CrashPoint::kAfterJournal);
      const auto size = fs::file_size(path);
      if (damage == 0) {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(size / 2));
        const std::string junk(size - size / 2, '\x5a');
        f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
      } else if (damage == 1) {
        fs::resize_file(path, size / 2);
      } else {
        fs::remove(path);
      }
      if (damage < 2) CHECK(!error_or_empty([&] { read_all(path); }).empty());
      if (by_repair) {
        CHECK(specdec::results::repair(path) == 5);
      } else {
        auto log = ResultsLog::open(path, file_info(), true);
        CHECK(log->finished(spec_run().name) == std::set<int64_t>{0, 1, 2, 3});
        CHECK(log->finished(ar_run().name) == std::set<int64_t>{0});
      }
      CHECK(fs::exists(path + ".damaged") == (damage < 2));  // kept, never deleted
      CHECK(!fs::exists(path + ".journal"));
      CHECK(diff_runs(read_all(path), want, false).empty());
    }
  }
  // Nothing to repair from: a one-line error naming the file.
  const std::string clean = fresh("clean.h5");
  {
    auto log = ResultsLog::open(clean, file_info(), false);
    log->declare_runs({spec_run()});
    append_request(*log, spec_run().name, 0);
  }
  const std::string e = error_or_empty([&] { specdec::results::repair(clean); });
  CHECK(e.find(clean) != std::string::npos);
  CHECK(e.find("no journal") != std::string::npos);
}

TEST_CASE("one writer per file: a second writer is refused while the first holds it", "[results][journal]") {
  const std::string path = fresh("locked.h5");
  auto first = ResultsLog::open(path, file_info(), false);
  first->declare_runs({spec_run()});
  append_request(*first, spec_run().name, 0);
  const std::string e = error_or_empty([&] { ResultsLog::open(path, file_info(), true); });
  CHECK(e.find(path) != std::string::npos);
  CHECK(e.find("another specdec process") != std::string::npos);
  first->close();
  CHECK(!fs::exists(path + ".lock"));
  // A refused resume (other config) releases the lock it took: the next open succeeds.
  CHECK(!error_or_empty([&] { ResultsLog::open(path, file_info("[model]\npath = other.bin\n"), true); }).empty());
  auto again = ResultsLog::open(path, file_info(), true);
  CHECK(again->finished(spec_run().name) == std::set<int64_t>{0});
}

TEST_CASE("the journal: a torn or corrupt tail ends it; the records before it are intact", "[results][journal]") {
  namespace journal = specdec::results::journal;
  const std::string path = fresh("torn.journal");
  {
    auto w = journal::Writer::create(path, file_info());
    w.add_run(spec_run());
    w.add_run(ar_run());
    for (int64_t id = 0; id < 3; ++id) {
      const RunData d = expected_run(spec_run(), {id});
      w.add_request({spec_run().name, d.requests[0], d.steps, d.draft_tokens, d.outputs.at(id)});
    }
  }
  const journal::Contents full = journal::read(path);
  REQUIRE(full.has_info);
  CHECK(full.info.config_text == file_info().config_text);
  CHECK(full.runs.size() == 2);
  REQUIRE(full.requests.size() == 3);
  CHECK(full.valid_bytes == full.file_bytes);
  CHECK(diff_runs(journal::to_runs(full), {expected_run(spec_run(), {0, 1, 2}), expected_run(ar_run(), {})}, false)
            .empty());

  // The last record's start: where a journal with two requests ends.
  const std::string two = fresh("two.journal");
  {
    auto w = journal::Writer::create(two, file_info());
    w.add_run(spec_run());
    w.add_run(ar_run());
    for (int64_t id = 0; id < 2; ++id) {
      const RunData d = expected_run(spec_run(), {id});
      w.add_request({spec_run().name, d.requests[0], d.steps, d.draft_tokens, d.outputs.at(id)});
    }
  }
  const auto last_start = fs::file_size(two);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = fresh("cut.journal");
  for (auto n = last_start; n < bytes.size(); ++n) {  // a kill after any byte of the last record
    {
      std::ofstream o(cut, std::ios::binary | std::ios::trunc);
      o.write(bytes.data(), static_cast<std::streamsize>(n));
    }
    const journal::Contents c = journal::read(cut);
    REQUIRE(c.requests.size() == 2);
    REQUIRE(c.valid_bytes == last_start);
  }
  for (auto at : {last_start, last_start + 7, last_start + 40, static_cast<uintmax_t>(bytes.size() - 1)}) {
    std::string flipped = bytes;  // a corrupt byte anywhere in the last record
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    {
      std::ofstream o(cut, std::ios::binary | std::ios::trunc);
      o.write(flipped.data(), static_cast<std::streamsize>(flipped.size()));
    }
    CHECK(journal::read(cut).requests.size() == 2);
  }
  // Appending after a torn tail cuts it off first.
  {
    std::ofstream o(cut, std::ios::binary | std::ios::trunc);
    o.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 3));
  }
  {
    auto w = journal::Writer::append_to(cut, journal::read(cut).valid_bytes);
    const RunData d = expected_run(ar_run(), {7});
    w.add_request({ar_run().name, d.requests[0], d.steps, d.draft_tokens, d.outputs.at(7)});
  }
  const journal::Contents c = journal::read(cut);
  REQUIRE(c.requests.size() == 3);
  CHECK(c.requests[2].run == ar_run().name);
  CHECK(c.valid_bytes == c.file_bytes);
  // Not a journal at all: a one-line error naming the file.
  {
    std::ofstream o(cut, std::ios::binary | std::ios::trunc);
    o << "hello";
  }
  const std::string e = error_or_empty([&] { journal::read(cut); });
  CHECK(e.find(cut) != std::string::npos);
}

TEST_CASE("a writer killed before its first append leaves no file; a clean close with none leaves one", "[results]") {
  const std::string path = fresh("unpublished.h5");
  fs::remove(path + ".partial");
  const int status = in_child([&] {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run(), ar_run()});
    std::_Exit(0);  // as a kill: no close
  });
  REQUIRE(WIFEXITED(status));
  CHECK(!fs::exists(path));
  CHECK(fs::exists(path + ".partial"));
  {
    auto log = ResultsLog::open(path, file_info(), true);  // nothing to resume: starts afresh
    CHECK(log->runs().empty());
    log->declare_runs({spec_run()});
  }
  CHECK(!fs::exists(path + ".partial"));
  const auto runs = read_all(path);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].requests.empty());
}

TEST_CASE("SIGKILL at random moments keeps every finished request", "[results][kill][slow]") {
  const std::string path = fresh("killed.h5");
  const std::vector<RunInfo> runs = {spec_run(), ar_run()};
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> delay_ms(5, 300);
  int64_t last_total = 0, kills_mid_run = 0;
  int damaged = 0;
  // SPECDEC_KILL_ROUNDS=N soaks it longer (e.g. 2000 rounds to see damaged files repaired).
  const int rounds = std::getenv("SPECDEC_KILL_ROUNDS") ? std::atoi(std::getenv("SPECDEC_KILL_ROUNDS")) : 48;
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The writer: resume, then append requests in id order to both runs until killed.
      try {
        auto log = ResultsLog::open(path, file_info(), true);
        log->declare_runs(runs);
        int64_t next = static_cast<int64_t>(log->finished(runs[0].name).size());
        for (const auto& run : runs) next = std::min(next, static_cast<int64_t>(log->finished(run.name).size()));
        for (;; ++next) {
          for (const auto& run : runs)
            if (!log->finished(run.name).count(next)) append_request(*log, run.name, next);
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "writer: %s\n", e.what());
        std::_Exit(3);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status));  // not an error exit of the writer

    if (!fs::exists(path) && !fs::exists(path + ".journal")) continue;  // killed before it created either
    // What a reader finds: the file as the kill left it, or, if the kill damaged it (HDF5 rewrites
    // metadata in place; rare), what `specdec repair` rebuilds from the journal, on a copy of both.
    std::vector<RunData> got;
    if (const std::string e = error_or_empty([&] { got = read_all(path); }); !e.empty()) {
      ++damaged;
      INFO("round " << round << ": " << e);
      const std::string copy = fresh("killed_copy.h5");
      fs::remove(copy + ".damaged");
      if (fs::exists(path)) fs::copy_file(path, copy, fs::copy_options::overwrite_existing);
      fs::copy_file(path + ".journal", copy + ".journal", fs::copy_options::overwrite_existing);
      specdec::results::repair(copy);
      got = read_all(copy);
    }
    int64_t total = 0;
    for (const auto& run : runs) {
      const RunData* r = find_run(got, run.name);
      if (!r) continue;  // killed while declaring
      std::vector<int64_t> ids;
      for (const auto& q : r->requests) ids.push_back(q.request_id);
      // Request ids 0..n-1 in order (run 1 may lag run 0 by the one request in flight).
      CHECK(ids == iota_ids(static_cast<int64_t>(ids.size())));
      CHECK(diff_runs({*r}, {expected_run(run, ids)}, false).empty());
      total += static_cast<int64_t>(ids.size());
    }
    CHECK(total >= last_total);  // nothing finished is ever lost
    kills_mid_run += total > last_total;
    last_total = total;
  }
  INFO("requests recorded over all rounds: " << last_total << "; files damaged by a kill: " << damaged);
  std::printf("SIGKILL rounds: %lld requests recorded, %d damaged file(s) repaired from the journal\n",
              static_cast<long long>(last_total), damaged);
  CHECK(kills_mid_run >= 4);  // the writer made progress between kills (rounds of slow machines included)

  // A final clean resume holds exactly what the journal holds: what the reader saw, plus at most the one
  // request per run that the last kill caught between the journal and the file.
  const auto before = read_all(path);
  const auto journaled = specdec::results::journal::to_runs(specdec::results::journal::read(path + ".journal"));
  {
    auto log = ResultsLog::open(path, file_info(), true);
    for (const auto& r : journaled) {
      std::set<int64_t> ids;
      for (const auto& q : r.requests) ids.insert(q.request_id);
      CHECK(log->finished(r.info.name) == ids);
      const RunData* seen = find_run(before, r.info.name);
      const size_t n_seen = seen ? seen->requests.size() : 0;
      CHECK(ids.size() >= n_seen);
      CHECK(ids.size() <= n_seen + 1);
    }
  }
  CHECK(!fs::exists(path + ".journal"));
  CHECK(diff_runs(read_all(path), journaled, false).empty());
}

TEST_CASE("merge of shard files equals one file with all requests", "[results]") {
  const std::string full = fresh("full.h5"), shard0 = fresh("shard0.h5"), shard1 = fresh("shard1.h5"),
                    merged = fresh("merged.h5");
  RunInfo only_in_1{"only_in_shard1", {{"drafter", "eagle"}}};
  {
    auto log = ResultsLog::open(full, file_info(), false);
    log->declare_runs({spec_run(), ar_run(), only_in_1});
    for (int64_t id = 0; id < 10; ++id) {
      append_request(*log, spec_run().name, id);
      append_request(*log, ar_run().name, id, 1);
      if (id % 2) append_request(*log, only_in_1.name, id);
    }
  }
  for (int shard = 0; shard < 2; ++shard) {
    auto log = ResultsLog::open(shard ? shard1 : shard0, file_info(), false);
    log->declare_runs(shard ? std::vector<RunInfo>{ar_run(), spec_run(), only_in_1}
                            : std::vector<RunInfo>{spec_run(), ar_run()});
    // Shards append in a scrambled order: merge sorts each run by request_id.
    for (int64_t id : {8, 2, 6, 0, 4, 9, 5, 1, 7, 3}) {
      if (id % 2 != shard) continue;
      append_request(*log, spec_run().name, id);
      append_request(*log, ar_run().name, id, 1);
      if (shard == 1) append_request(*log, only_in_1.name, id);
    }
  }
  merge({shard0, shard1}, merged);
  const auto want = read_all(full), got = read_all(merged);
  CHECK(diff_runs(got, want, false).empty());
  REQUIRE(got.size() == 3);
  CHECK(got[0].requests == want[0].requests);  // same order too: request_id order
  CHECK(got[0].steps == want[0].steps);
  CHECK(got[0].draft_tokens == want[0].draft_tokens);
  CHECK(got[2].info.name == only_in_1.name);
  CHECK(read_info(merged).config_text == file_info().config_text);
  // The merged file is an ordinary log: it resumes.
  auto log = ResultsLog::open(merged, file_info(), true);
  CHECK(log->finished(spec_run().name).size() == 10);
}

TEST_CASE("merge refuses duplicates, other configs and an existing output", "[results]") {
  const std::string a = fresh("dup_a.h5"), b = fresh("dup_b.h5"), c = fresh("other_config.h5"),
                    out = fresh("dup_out.h5");
  for (const auto& [path, ids] :
       std::vector<std::pair<std::string, std::vector<int64_t>>>{{a, {0, 1, 2}}, {b, {3, 2}}}) {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run()});
    for (int64_t id : ids) append_request(*log, spec_run().name, id);
  }
  {
    auto log = ResultsLog::open(c, file_info("[model]\npath = x\n"), false);
    log->declare_runs({spec_run()});
  }
  auto err = error_or_empty([&] { merge({a, b}, out); });
  CHECK(err.find("request 2") != std::string::npos);
  CHECK(err.find(b) != std::string::npos);
  CHECK(err.find('\n') == std::string::npos);
  CHECK(!fs::exists(out));
  err = error_or_empty([&] { merge({a, c}, out); });
  CHECK(err.find(c) != std::string::npos);
  CHECK(err.find("different config") != std::string::npos);
  CHECK(!fs::exists(out));
  err = error_or_empty([&] { merge({a}, b); });
  CHECK(err.find("already exists") != std::string::npos);
}
