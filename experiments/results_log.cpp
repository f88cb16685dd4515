// ResultsLog: writes the HDF5 results log of docs/hdf5-schema.md with the HDF5 C API, request by request,
// so that a run killed at any moment (SIGKILL included) leaves a readable file holding every request that
// finished before the kill. Reading, merge and diff: results_read.cpp.
//
// Why SWMR, and what HDF5 1.10 guarantees (checked against 1.10.8):
// - Without SWMR, H5Fflush makes the file consistent at the moment it returns, but not between flushes:
//   the metadata cache writes dirty entries in its own order (on eviction and during a flush), and freed
//   space is reused at once. Each append rewrites the last, partial, compressed chunk of every table; a
//   chunk that grows moves and its old place is freed and may be handed to the next chunk, while the index
//   on disk still points there. A kill before the next flush then leaves an index that points at other
//   bytes: rows of requests that finished long ago become unreadable. Flush ordering alone is not enough.
// - In SWMR-write mode the library writes metadata in flush-dependency order (never a pointer on disk to
//   something not yet written) and never frees the old place of a rewritten chunk (a reader may still
//   follow the old index), so the file on disk is a consistent snapshot at every moment. The price is
//   growth: every flush leaves the previous copy of each table's last chunk behind, hence the small
//   chunks below (about 8 KiB of rows each; with gzip that is a few KiB per request).
// - SWMR cannot create objects: groups and tables are created before SWMR starts (declare_runs before
//   the first append); a run created later costs a close and a reopen outside SWMR.
// - A killed writer leaves the superblock flagged "open for (SWMR) write": a plain read-only open then
//   fails ("may use h5clear"). Readers open in SWMR-read mode, which those flags allow (h5py >= 3 retries
//   so on its own), or with the "clear_status_flags" access property h5clear uses; --resume clears them
//   the same way (see h5::file_access).
// On top of SWMR, each append flushes twice: the request's draft_tokens, steps, outputs and output_tokens
// rows first, then its requests row, so the requests row (the commit record) never reaches the disk before
// the request's other rows. Every table's fill value has request_id = -1: if a table's new extent reached
// the disk before its data, those rows read as -1 and count as unfinished.
//
// SWMR is not the whole story: a kill at a bad moment can still leave a dataset's object header half
// rewritten (seen once in 3,000+ kills of a resumed writer: a bad checksum). So the log keeps a
// write-ahead journal beside the file (results_journal.h): each request goes to the journal, durably,
// before it goes into the HDF5 file, and --resume reconciles the two, rebuilding a damaged file from the
// journal. Nothing that finished is ever lost, whatever the HDF5 library leaves behind.
#include "experiments/results_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <thread>
#include <optional>
#include <sstream>

#include "experiments/results_hdf5.h"
#include "experiments/results_journal.h"
#include "experiments/results_schema.h"

namespace specdec::results {

using h5::Hid;

namespace testing {
namespace {
CrashPoint g_crash = CrashPoint::kNone;
}
void crash_in_next_append(CrashPoint where) { g_crash = where; }
}  // namespace testing

namespace {

// Rows per chunk: ~8-12 KiB of rows, a compromise between compression and SWMR's per-flush copy of the
// last chunk.
constexpr hsize_t kChunkRequests = 64, kChunkSteps = 256, kChunkDraft = 256, kChunkOutputs = 512,
                  kChunkOutputTokens = 2048;
constexpr int kGzipLevel = 4;

void maybe_crash(testing::CrashPoint here) {
  if (testing::g_crash == here) std::_Exit(0);  // as a kill: no destructor, no HDF5 close, no flush
}

bool tree_proposal(const StepRecord& s) {
  for (const auto& n : s.nodes)
    if (n.parent != n.node - 1) return true;
  return false;
}

// Line number and both lines of the first difference of two config texts (for the mismatch message).
std::string first_difference(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool ha = static_cast<bool>(std::getline(sa, la)), hb = static_cast<bool>(std::getline(sb, lb));
    if (!ha && !hb) return "they differ only in line endings";
    if (!ha || !hb || la != lb)
      return "first difference at line " + std::to_string(line) + ": file has '" + (ha ? la : "<end>") +
             "', this run has '" + (hb ? lb : "<end>") + "'";
  }
}

void check_run_name(const std::string& path, const std::string& name) {
  SPECDEC_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..", "results log '",
                path, "': run name '", name, "' must be non-empty and contain no '/'");
}

// True when every run and request of the file is in the journal with the same rows (the file may lack
// requests at the end: a kill between the two writes); else false, with the first difference in `why`.
bool file_agrees_with_journal(const std::vector<RunData>& file, const std::vector<RunData>& journal, std::string& why) {
  for (const RunData& f : file) {
    const RunData* j = nullptr;
    for (const auto& r : journal)
      if (r.info.name == f.info.name) j = &r;
    if (!j) {
      why = "run '" + f.info.name + "' is not in the journal";
      return false;
    }
    if (j->info.attrs != f.info.attrs) {
      why = "run '" + f.info.name + "' has other attributes than in the journal";
      return false;
    }
    // The file's requests must be the journal's, with the same rows (timings included).
    RunData want;
    want.info = f.info;
    std::set<int64_t> ids;
    for (const auto& q : f.requests) ids.insert(q.request_id);
    for (const auto& q : j->requests)
      if (ids.count(q.request_id)) want.requests.push_back(q);
    for (const auto& s : j->steps)
      if (ids.count(s.request_id)) want.steps.push_back(s);
    for (const auto& d : j->draft_tokens)
      if (ids.count(d.request_id)) want.draft_tokens.push_back(d);
    for (const auto& [id, toks] : j->outputs)
      if (ids.count(id)) want.outputs[id] = toks;
    if (want.requests.size() != f.requests.size()) {
      why = "run '" + f.info.name + "' holds requests the journal does not";
      return false;
    }
    const std::string d = diff_runs({f}, {want}, /*ignore_timings=*/false);
    if (!d.empty()) {
      why = d;
      return false;
    }
  }
  return true;
}

}  // namespace

class Hdf5ResultsLog final : public ResultsLog {
 public:
  // journaled: keep <path>.journal (the runner's logs); merge writes its output without one.
  Hdf5ResultsLog(std::string path, const FileInfo& info, bool resume, bool journaled = true)
      : path_(std::move(path)), journaled_(journaled) {
    h5::Quiet quiet;
    if (journaled_) lock();
    try {
      open_or_create(info, resume);
    } catch (...) {
      close_tables();
      file_.reset();
      journal_.reset();
      unlock();
      throw;
    }
  }

  ~Hdf5ResultsLog() override {
    try {
      close();
    } catch (...) {  // a destructor must not throw; close() reports the same failure to whoever calls it
    }
    unlock();
  }

 private:
  void open_or_create(const FileInfo& info, bool resume) {
    const std::string jpath = journal::path_for(path_);
    if (std::filesystem::exists(path_)) {
      SPECDEC_CHECK(resume, "results log '", path_,
                    "' already exists; pass --resume to continue it, or choose another --out");
      if (journaled_ && std::filesystem::exists(jpath))
        reconcile(info, journal::read(jpath));
      else
        reopen(info, /*seed_journal=*/journaled_);
      return;
    }
    if (resume && journaled_ && std::filesystem::exists(jpath)) {
      // Killed before the file was published (or the file was lost): the journal alone holds the work.
      journal::Contents j = journal::read(jpath);
      if (j.has_info && !j.requests.empty()) {
        check_same_config(jpath, j.info.config_text, info.config_text);
        rebuild(j, jpath);
        return;
      }
    }
    try {
      create(info);
      if (journaled_) journal_.emplace(journal::Writer::create(jpath, info));
    } catch (...) {
      abandon();
      throw;
    }
  }

 public:
  const std::string& path() const override { return path_; }

  std::vector<std::string> runs() const override { return order_; }

  std::set<int64_t> finished(const std::string& run) const override {
    auto it = runs_.find(run);
    return it == runs_.end() ? std::set<int64_t>{} : it->second.finished;
  }

  void ensure_run(const RunInfo& run) override { declare_runs({run}); }

  void declare_runs(const std::vector<RunInfo>& runs) override {
    h5::Quiet quiet;
    check_usable();
    std::vector<const RunInfo*> missing;
    std::set<std::string> seen;
    for (const auto& run : runs) {
      check_run_name(path_, run.name);
      SPECDEC_CHECK(seen.insert(run.name).second, "results log '", path_, "': run '", run.name, "' is declared twice");
      auto it = runs_.find(run.name);
      if (it == runs_.end()) {
        missing.push_back(&run);
        continue;
      }
      const auto& have = it->second.info.attrs;
      for (const auto& [key, value] : run.attrs) {
        auto h = have.find(key);
        SPECDEC_CHECK(h != have.end() && h->second == value, "results log '", path_, "': run '", run.name,
                      "' exists with ", key, "=", h == have.end() ? std::string("<unset>") : "'" + h->second + "'",
                      ", this run has ", key, "='", value, "'");
      }
      for (const auto& [key, value] : have)
        SPECDEC_CHECK(run.attrs.count(key), "results log '", path_, "': run '", run.name, "' exists with ", key, "='",
                      value, "', this run does not set ", key);
    }
    if (missing.empty()) return;
    if (journal_)
      for (const RunInfo* run : missing) journal_->add_run(*run);
    leave_swmr();
    for (const RunInfo* run : missing) create_run(*run);
    flush();
  }

  void append(const std::string& run, const RequestRecord& rec) override {
    h5::Quiet quiet;
    check_usable();
    auto it = runs_.find(run);
    SPECDEC_CHECK(it != runs_.end(), "results log '", path_, "': append to run '", run,
                  "' before ensure_run/declare_runs created it");
    SPECDEC_CHECK(rec.result, "results log '", path_, "': request ", rec.request_id, " of run '", run,
                  "' has no DecodeResult");
    SPECDEC_CHECK(rec.request_id >= 0, "results log '", path_, "': request_id must be >= 0, got ", rec.request_id);
    SPECDEC_CHECK(!it->second.finished.count(rec.request_id), "results log '", path_, "': request ", rec.request_id,
                  " of run '", run, "' is already recorded");
    const DecodeResult& res = *rec.result;

    RequestRow row;
    row.request_id = rec.request_id;
    row.prompt_id = rec.prompt_id;
    row.category = rec.category;
    row.repeat = rec.repeat;
    row.prompt_tokens = rec.prompt_tokens;
    row.new_tokens = static_cast<int32_t>(res.tokens.size());
    row.wall_time_s = rec.wall_time_s;
    row.prefill_s = rec.prefill_s;
    row.decode_s = rec.decode_s;
    row.steps = static_cast<int32_t>(res.steps.size());
    row.tau = res.tau();
    row.stopped = rec.stopped;
    row.invocation = rec.timing.invocation;
    row.host = rec.timing.host;
    row.host_cores = rec.timing.host_cores;
    row.load_avg = rec.timing.load_avg;
    row.threads = rec.timing.threads;
    row.device = rec.timing.device;
    row.logged_at = rec.timing.logged_at;
    row.arrival_s = rec.arrival_s;
    {  // checks the string lengths before anything is written
      const h5::Layout l = h5::layout<RequestRow>();
      std::vector<char> buf(l.size);
      h5::encode(l, row, buf.data(), path_);
    }

    journal::Request jr;
    jr.run = run;
    jr.row = row;
    jr.tokens = res.tokens;
    jr.steps.reserve(res.steps.size());
    SPECDEC_CHECK(rec.step_load.empty() || rec.step_load.size() == res.steps.size(), "results log '", path_,
                  "': request ", rec.request_id, " has ", rec.step_load.size(), " step loads for ", res.steps.size(),
                  " steps");
    for (size_t i = 0; i < res.steps.size(); ++i) {
      const StepRecord& s = res.steps[i];
      const StepLoad load = rec.step_load.empty() ? StepLoad{.batch_size = rec.batch_size} : rec.step_load[i];
      jr.steps.push_back({.request_id = rec.request_id,
                          .step = s.step,
                          .n_proposed = s.n_proposed,
                          .n_accepted = s.n_accepted,
                          .n_emitted = s.n_emitted,
                          .tree_nodes = tree_proposal(s) ? static_cast<int32_t>(s.nodes.size()) : 0,
                          .max_depth = s.max_depth,
                          .t_draft_us = s.t_draft_us,
                          .t_verify_us = s.t_verify_us,
                          .context_len = s.context_len,
                          .batch_size = load.batch_size,
                          .k_policy = s.k_policy,
                          .t_forward_us = s.t_forward_us,
                          .batch_step = load.batch_step,
                          .t_emit_s = load.t_emit_s,
                          .k_expected = s.k_expected});
      for (const auto& n : s.nodes)
        jr.drafts.push_back({rec.request_id, s.step, n.node, n.parent, n.depth, n.token, n.p_target, n.q_draft, n.u,
                             n.visited, n.accepted, n.p_test, n.threshold, n.passed});
    }
    if (journal_) journal_->add_request(jr);  // durable before the HDF5 file sees it
    maybe_crash(testing::CrashPoint::kAfterJournal);
    write_rows(jr);
  }

  void close() override {
    if (!file_.valid()) return;
    h5::Quiet quiet;
    close_tables();
    const herr_t r = file_.reset();  // a clean close also clears the superblock's "open for write" flags
    SPECDEC_H5(r, published_ ? path_ : partial_path(), "cannot close the file");
    if (!published_) publish_closed();
    if (journal_ && !broken_) {  // the file is complete and closed: its journal has done its job
      const std::string jpath = journal_->path();
      journal_.reset();
      std::error_code ec;
      std::filesystem::remove(jpath, ec);
    }
    unlock();
  }

  // Closes and deletes a file that was never published (merge's failure path).
  void abandon() {
    close_tables();
    file_.reset();
    if (!published_) {
      std::error_code ec;
      std::filesystem::remove(partial_path(), ec);
    }
  }

  // Bulk write for merge: all rows of one run at once, outside SWMR (a merge killed half-way is simply
  // run again). Rows are grouped by request, requests in the wanted order.
  void write_bulk(const std::string& run, const std::vector<RequestRow>& requests, const std::vector<StepRow>& steps,
                  const std::vector<DraftTokenRow>& drafts, const std::map<int64_t, std::vector<TokenId>>& outputs) {
    h5::Quiet quiet;
    check_usable();
    leave_swmr();
    std::vector<OutputRow> out;
    std::vector<TokenId> tokens;
    const auto base = static_cast<int64_t>(
        h5::table_size(path_, table(run, h5::kOutputTokens), h5::table_path(run, h5::kOutputTokens)));
    for (const auto& r : requests) {
      auto it = outputs.find(r.request_id);
      const std::vector<TokenId> none;
      const auto& toks = it == outputs.end() ? none : it->second;
      out.push_back({r.request_id, base + static_cast<int64_t>(tokens.size()), static_cast<int32_t>(toks.size())});
      tokens.insert(tokens.end(), toks.begin(), toks.end());
    }
    append_to(run, drafts);
    append_to(run, steps);
    append_to(run, out);
    append_tokens(run, tokens);
    flush();
    append_to(run, requests);
    flush();
    for (const auto& r : requests) runs_[run].finished.insert(r.request_id);
  }

 private:
  struct RunState {
    RunInfo info;
    std::set<int64_t> finished;
  };

  void check_usable() const {
    SPECDEC_CHECK(file_.valid(), "results log '", path_, "' is closed");
    SPECDEC_CHECK(!broken_, "results log '", path_,
                  "': an earlier write failed; the file keeps every finished request, reopen it with --resume");
  }

  void flush() { SPECDEC_H5(H5Fflush(file_, H5F_SCOPE_LOCAL), path_, "cannot flush"); }

  template <class Row>
  void append_to(const std::string& run, const std::vector<Row>& rows) {
    const char* name = schema::Table<Row>::name;
    h5::append_table(path_, table(run, name), h5::table_path(run, name), rows);
  }
  void append_tokens(const std::string& run, const std::vector<TokenId>& tokens) {
    h5::append_rows(path_, table(run, h5::kOutputTokens), h5::table_path(run, h5::kOutputTokens), H5T_NATIVE_INT32,
                    tokens.data(), tokens.size());
  }

  // The open handle of a table, kept across appends: its chunk cache then holds each table's last,
  // partial chunk, which is otherwise read back and decompressed on every append.
  hid_t table(const std::string& run, const char* name) {
    Hid& h = tables_[run][name];
    if (!h.valid()) h = h5::open_table(path_, file_, run, name);
    return h;
  }
  void close_tables() { tables_.clear(); }

  // One request's rows into the HDF5 tables (append, and replaying a journal).
  void write_rows(const journal::Request& r) {
    const std::string& run = r.run;
    enter_swmr();
    broken_ = true;  // until the requests row is flushed: a failure in between leaves a partial request
    const std::vector<OutputRow> output{{r.row.request_id,
                                         static_cast<int64_t>(h5::table_size(path_, table(run, h5::kOutputTokens),
                                                                             h5::table_path(run, h5::kOutputTokens))),
                                         static_cast<int32_t>(r.tokens.size())}};
    append_to(run, r.drafts);
    append_to(run, r.steps);
    append_to(run, output);
    append_tokens(run, r.tokens);
    maybe_crash(testing::CrashPoint::kBeforeFirstFlush);
    flush();  // phase 1: the request's rows in every other table are on disk ...
    maybe_crash(testing::CrashPoint::kAfterFirstFlush);
    append_to(run, std::vector<RequestRow>{r.row});
    flush();  // ... before its requests row, the commit record, is
    broken_ = false;
    runs_[run].finished.insert(r.row.request_id);
  }

  // ---- file lifecycle --------------------------------------------------------------------------------

  // One writer per file: an exclusive lock on <path>.lock for the life of the writer (SWMR itself holds
  // no lock, and two writers, e.g. two --resume at once, would interleave their appends).
  void lock() {
    const std::string lpath = path_ + ".lock";
    lock_fd_ = ::open(lpath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    SPECDEC_CHECK(lock_fd_ >= 0, "results log '", path_, "': cannot create its lock file '", lpath,
                  "': ", std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      SPECDEC_FAIL("results log '", path_, "' is being written by another specdec process (", lpath,
                   " is locked); wait for it to finish, or choose another --out");
    }
  }
  void unlock() {
    if (lock_fd_ < 0) return;
    std::error_code ec;
    std::filesystem::remove(path_ + ".lock", ec);
    ::close(lock_fd_);  // releases the lock
    lock_fd_ = -1;
  }

  // A new file is built as <path>.partial and renamed to <path> at the first append (or close): a kill
  // while it is being created, or while declare_runs creates its runs, leaves no file at <path>.
  std::string partial_path() const { return path_ + ".partial"; }

  void create(const FileInfo& info) {
    Hid fapl = h5::file_access(false);
    const std::string partial = partial_path();
    std::error_code ec;
    std::filesystem::remove(partial, ec);  // left by a writer killed while creating
    file_ = Hid(SPECDEC_H5(H5Fcreate(partial.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl), path_, "cannot create '",
                           partial, "' (does its folder exist and is it writable?)"),
                H5Fclose);
    published_ = false;
    {
      Hid space(H5Screate(H5S_SCALAR), H5Sclose);
      Hid attr(SPECDEC_H5(H5Acreate2(file_, "schema_version", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT), path_,
                          "cannot write /schema_version"),
               H5Aclose);
      const int32_t version = kSchemaVersion;
      SPECDEC_H5(H5Awrite(attr, H5T_NATIVE_INT32, &version), path_, "cannot write /schema_version");
    }
    h5::write_string_attr(path_, file_, "/", "specdec_version", info.specdec_version);
    h5::write_string_attr(path_, file_, "/", "config", info.config_text);
    h5::write_string_attr(path_, file_, "/", "host", info.host_json);
    h5::write_string_attr(path_, file_, "/", "seeds", info.seeds);
    h5::write_string_attr(path_, file_, "/", "start_time", info.start_time);
    h5::write_string_attr(path_, file_, "/", "columns", schema_json());  // the column list, for readers
    Hid gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);  // runs listed as declared
    Hid runs(SPECDEC_H5(H5Gcreate2(file_, "runs", H5P_DEFAULT, gcpl, H5P_DEFAULT), path_, "cannot create /runs"),
             H5Gclose);
    flush();
  }

  void check_same_config(const std::string& file, const std::string& stored, const std::string& wanted) const {
    SPECDEC_CHECK(stored == wanted, "results log '", file, "' was written with a different config (",
                  first_difference(stored, wanted), "); resume with the same config, or choose another --out");
  }

  // --resume with a journal: continue the file if it is readable and agrees with the journal (appending
  // the requests it lacks from the journal), else set it aside and rebuild it from the journal.
  void reconcile(const FileInfo& info, journal::Contents j) {
    const std::string jpath = journal::path_for(path_);
    SPECDEC_CHECK(j.has_info, "results journal '", jpath, "' holds no file header; move it away to resume from '",
                  path_, "' alone");
    check_same_config(jpath, j.info.config_text, info.config_text);
    const std::vector<RunData> want = journal::to_runs(j);
    std::string why;
    bool usable = false;
    try {
      const std::vector<RunData> have = read_all(path_);
      usable = file_agrees_with_journal(have, want, why);
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!usable) {
      set_aside(why);
      rebuild(j, jpath);
      return;
    }
    reopen(info, /*seed_journal=*/false);
    journal_.emplace(journal::Writer::append_to(jpath, j.valid_bytes));
    // Runs and requests the journal has and the file lacks (a kill between the two writes).
    std::vector<const RunInfo*> runs_missing;
    for (const RunInfo& run : j.runs)
      if (!runs_.count(run.name)) runs_missing.push_back(&run);
    if (!runs_missing.empty()) {
      leave_swmr();
      for (const RunInfo* run : runs_missing) create_run(*run);
      flush();
    }
    for (const journal::Request& r : j.requests)
      if (!runs_[r.run].finished.count(r.row.request_id)) write_rows(r);
  }

  // Renames a damaged or disagreeing file out of the way (never deletes it) and says so on stderr.
  void set_aside(const std::string& why) {
    std::string aside = path_ + ".damaged";
    for (int i = 1; std::filesystem::exists(aside); ++i) aside = path_ + ".damaged." + std::to_string(i);
    std::error_code ec;
    std::filesystem::rename(path_, aside, ec);
    SPECDEC_CHECK(!ec, "results log '", path_, "': cannot move the damaged file to '", aside, "': ", ec.message());
    std::fprintf(stderr,
                 "specdec: results log '%s' is damaged or disagrees with its journal (%s); kept as '%s', rebuilding it "
                 "from '%s'\n",
                 path_.c_str(), why.c_str(), aside.c_str(), journal::path_for(path_).c_str());
  }

  // A new file holding exactly the journal's runs and requests, published at once; appends continue it.
  void rebuild(const journal::Contents& j, const std::string& jpath) {
    try {
      create(j.info);
      for (const RunInfo& run : j.runs) create_run(run);
      flush();
      for (RunData& run : journal::to_runs(j))
        if (!run.requests.empty()) write_bulk(run.info.name, run.requests, run.steps, run.draft_tokens, run.outputs);
      enter_swmr();  // closes the .partial file, renames it into place, reopens it for SWMR appends
    } catch (...) {
      abandon();
      throw;
    }
    journal_.emplace(journal::Writer::append_to(jpath, j.valid_bytes));
  }

  // --resume: SWMR write from the start, so dropping a partial request is itself crash-consistent.
  // seed_journal: the file has no journal (written by an older specdec, or closed cleanly): start one
  // holding everything the file holds, so that the rest of the run is covered.
  void reopen(const FileInfo& info, bool seed_journal) {
    {  // schema and config first, read-only: a refused resume leaves the file untouched
      Hid file = h5::open_for_read(path_);
      int version = 0;
      const FileInfo stored = h5::read_file_info(path_, file, &version);
      SPECDEC_CHECK(version == kSchemaVersion, "results log '", path_, "' has schema_version ", version,
                    "; this build appends to schema_version ", kSchemaVersion, " only (`specdec merge ", path_,
                    " -o NEW.h5` rewrites it as version ", kSchemaVersion, ")");
      check_same_config(path_, stored.config_text, info.config_text);
    }
    if (seed_journal) {
      const std::string jpath = journal::path_for(path_), tmp = jpath + ".tmp";
      const FileInfo stored = read_info(path_);
      journal::Writer w = journal::Writer::create(tmp, stored);
      for (const RunData& run : read_all(path_)) {
        w.add_run(run.info);
        for (const journal::Request& r : journal::split_requests(run)) w.add_request(r);
      }
      std::error_code ec;
      std::filesystem::rename(tmp, jpath, ec);
      SPECDEC_CHECK(!ec, "results journal '", jpath, "': cannot rename '", tmp, "' to it: ", ec.message());
      journal_.emplace(std::move(w));
    }
    Hid fapl = h5::file_access(true);
    file_ = Hid(SPECDEC_H5(H5Fopen(path_.c_str(), H5F_ACC_RDWR | H5F_ACC_SWMR_WRITE, fapl), path_,
                           "cannot open for --resume (not an HDF5 results log, damaged, or not writable)"),
                H5Fclose);
    swmr_ = true;
    // A killed SWMR writer can leave objects past the end-of-allocation stored in the superblock (SWMR
    // readers are allowed past it; a writer is not: "addr overflow"). Move it to the end of the file, as
    // `h5clear --increment=0` would; what lies past the old value is either such objects or garbage.
    SPECDEC_H5(H5Fincrement_filesize(file_, 0), path_, "cannot repair the end-of-allocation for --resume");
    for (const auto& name : h5::list_runs(path_, file_)) {
      order_.push_back(name);
      RunState& st = runs_[name];
      st.info = h5::read_run_info(path_, file_, name);
      st.finished = recover(name);
    }
    flush();
  }

  // Drops the rows of a request that never got its requests row (only ever at the tail of each table)
  // and returns the finished request ids.
  std::set<int64_t> recover(const std::string& run) {
    const Hid id_only = h5::id_only_type();
    // requests: a row is finished once its data reached the disk (request_id >= 0; -1 is the fill value).
    const hid_t req = table(run, h5::kRequests);
    const std::string req_obj = h5::table_path(run, h5::kRequests);
    std::vector<int64_t> ids(h5::table_size(path_, req, req_obj));
    if (!ids.empty()) h5::read_rows(path_, req, req_obj, id_only, ids.data());
    std::set<int64_t> finished;
    size_t keep = 0;
    while (keep < ids.size() && ids[keep] >= 0) {
      SPECDEC_CHECK(finished.insert(ids[keep]).second, "results log '", path_, "': ", req_obj, " holds request ",
                    ids[keep], " twice (damaged file)");
      ++keep;
    }
    for (size_t i = keep; i < ids.size(); ++i)
      SPECDEC_CHECK(ids[i] < 0, "results log '", path_, "': ", req_obj, " has an unwritten row ", keep,
                    " before finished rows (damaged file)");
    if (keep < ids.size()) h5::set_table_size(path_, req, req_obj, keep);

    // Other tables: keep the longest prefix of rows of finished requests; the rest must be one tail.
    int64_t out_tokens_end = 0;
    for (const char* table : {h5::kSteps, h5::kDraftTokens, h5::kOutputs}) {
      const hid_t ds = this->table(run, table);
      const std::string obj = h5::table_path(run, table);
      std::vector<int64_t> rid(h5::table_size(path_, ds, obj));
      if (!rid.empty()) h5::read_rows(path_, ds, obj, id_only, rid.data());
      size_t n = rid.size();
      while (n > 0 && !finished.count(rid[n - 1])) --n;
      for (size_t i = 0; i < n; ++i)
        SPECDEC_CHECK(finished.count(rid[i]), "results log '", path_, "': ", obj, " row ", i, " belongs to request ",
                      rid[i], ", which never finished, yet rows of finished requests follow it (damaged file)");
      if (n < rid.size()) h5::set_table_size(path_, ds, obj, n);
      if (std::string_view(table) == h5::kOutputs && n > 0) {
        const std::vector<OutputRow> rows = h5::read_table<OutputRow>(path_, ds, obj);
        for (size_t i = 0; i < n; ++i) out_tokens_end = std::max(out_tokens_end, rows[i].offset + rows[i].length);
      }
    }
    const hid_t tok = table(run, h5::kOutputTokens);
    const std::string tok_obj = h5::table_path(run, h5::kOutputTokens);
    const hsize_t n_tok = h5::table_size(path_, tok, tok_obj);
    SPECDEC_CHECK(static_cast<hsize_t>(out_tokens_end) <= n_tok, "results log '", path_, "': ", tok_obj, " has ", n_tok,
                  " tokens but outputs refer to ", out_tokens_end, " (damaged file)");
    if (static_cast<hsize_t>(out_tokens_end) < n_tok) h5::set_table_size(path_, tok, tok_obj, out_tokens_end);
    return finished;
  }

  void enter_swmr() {
    if (swmr_) return;
    close_tables();
    if (!published_) {  // close the finished skeleton, rename it into place, reopen in SWMR mode
      SPECDEC_H5(file_.reset(), partial_path(), "cannot close the file");
      publish_closed();
      Hid fapl = h5::file_access(false);
      file_ = Hid(SPECDEC_H5(H5Fopen(path_.c_str(), H5F_ACC_RDWR | H5F_ACC_SWMR_WRITE, fapl), path_,
                             "cannot reopen in SWMR write mode"),
                  H5Fclose);
    } else {
      SPECDEC_H5(H5Fstart_swmr_write(file_), path_, "cannot start SWMR write mode");
    }
    swmr_ = true;
  }

  void publish_closed() {
    SPECDEC_CHECK(!std::filesystem::exists(path_), "results log '", path_,
                  "' appeared while this process was creating it (another writer?); its work is in '", partial_path(),
                  "'");
    std::error_code ec;
    std::filesystem::rename(partial_path(), path_, ec);
    SPECDEC_CHECK(!ec, "results log '", path_, "': cannot rename '", partial_path(), "' to it: ", ec.message());
    published_ = true;
  }

  // Objects can only be created outside SWMR: close (clean) and reopen for plain read-write.
  void leave_swmr() {
    if (!swmr_) return;
    close_tables();  // an object left open would keep the file open past H5Fclose
    SPECDEC_H5(file_.reset(), path_, "cannot close the file to create new runs");
    Hid fapl = h5::file_access(false);
    file_ = Hid(SPECDEC_H5(H5Fopen(path_.c_str(), H5F_ACC_RDWR, fapl), path_, "cannot reopen to create new runs"),
                H5Fclose);
    swmr_ = false;
  }

  void create_run(const RunInfo& run) {
    const std::string obj = h5::run_path(run.name);
    Hid gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    H5Pset_obj_track_times(gcpl, false);
    Hid group(SPECDEC_H5(H5Gcreate2(file_, obj.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT), path_, "cannot create ", obj),
              H5Gclose);
    for (const auto& [key, value] : run.attrs) h5::write_string_attr(path_, group, obj, key, value);
    create_table<RequestRow>(group, run.name, kChunkRequests);
    create_table<StepRow>(group, run.name, kChunkSteps);
    create_table<DraftTokenRow>(group, run.name, kChunkDraft);
    create_table<OutputRow>(group, run.name, kChunkOutputs);
    const int32_t fill_token = -1;
    create_table(group, run.name, h5::kOutputTokens, H5T_STD_I32LE, H5T_NATIVE_INT32, &fill_token, kChunkOutputTokens);
    order_.push_back(run.name);
    runs_[run.name].info = run;
  }

  // The table of Row: its packed compound, fill value a row with request_id = -1.
  template <class Row>
  void create_table(hid_t group, const std::string& run, hsize_t chunk_rows) {
    const h5::Layout l = h5::layout<Row>();
    Row fill{};
    fill.request_id = -1;
    std::vector<char> buf(l.size);
    h5::encode(l, fill, buf.data(), path_);
    create_table(group, run, schema::Table<Row>::name, l.type, l.type, buf.data(), chunk_rows);
  }

  // A 1-D, empty, unlimited, chunked, shuffle + gzip table whose fill value is `fill` (request_id = -1).
  void create_table(hid_t group, const std::string& run, const char* name, hid_t file_type, hid_t mem_type,
                    const void* fill, hsize_t chunk_rows) {
    const std::string obj = h5::table_path(run, name);
    const hsize_t zero = 0, unlimited = H5S_UNLIMITED;
    Hid space(H5Screate_simple(1, &zero, &unlimited), H5Sclose);
    Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    SPECDEC_H5(H5Pset_chunk(dcpl, 1, &chunk_rows), path_, "cannot set the chunking of ", obj);
    SPECDEC_H5(H5Pset_shuffle(dcpl), path_, "cannot set the shuffle filter of ", obj);
    SPECDEC_H5(H5Pset_deflate(dcpl, kGzipLevel), path_, "cannot set gzip on ", obj, " (HDF5 built without zlib?)");
    SPECDEC_H5(H5Pset_fill_value(dcpl, mem_type, fill), path_, "cannot set the fill value of ", obj);
    H5Pset_obj_track_times(dcpl, false);
    Hid ds(SPECDEC_H5(H5Dcreate2(group, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), path_,
                      "cannot create ", obj),
           H5Dclose);
  }

  std::string path_;
  Hid file_;
  std::map<std::string, std::map<std::string, Hid>> tables_;  // run -> table -> open dataset
  bool swmr_ = false;
  bool published_ = true;  // false while a new file is still <path>.partial
  bool broken_ = false;
  bool journaled_ = true;
  int lock_fd_ = -1;
  std::optional<journal::Writer> journal_;
  std::vector<std::string> order_;
  std::map<std::string, RunState> runs_;

  friend void merge(const std::vector<std::string>& inputs, const std::string& output);
};

std::unique_ptr<ResultsLog> ResultsLog::open(const std::string& path, const FileInfo& info, bool resume) {
  return std::make_unique<Hdf5ResultsLog>(path, info, resume);
}

int64_t repair(const std::string& path) {
  const std::string jpath = journal::path_for(path);
  SPECDEC_CHECK(std::filesystem::exists(jpath), "results log '", path, "': no journal '", jpath,
                "' to repair it from (a run that finished, or was stopped cleanly, removes it: the file is complete)");
  const journal::Contents j = journal::read(jpath);
  SPECDEC_CHECK(j.has_info, "results journal '", jpath, "' holds no file header: nothing to repair from");
  Hdf5ResultsLog log(path, j.info, /*resume=*/true);
  int64_t n = 0;
  for (const auto& run : log.runs()) n += static_cast<int64_t>(log.finished(run).size());
  log.close();
  return n;
}

// merge lives here (it writes through Hdf5ResultsLog::write_bulk); reading is in results_read.cpp.
void merge(const std::vector<std::string>& inputs, const std::string& output) {
  SPECDEC_CHECK(!inputs.empty(), "merge needs at least one input file");
  SPECDEC_CHECK(!std::filesystem::exists(output), "merge output '", output,
                "' already exists; choose another name or remove it");
  const FileInfo info = read_info(inputs[0]);

  struct Run {
    RunInfo info;
    std::string info_file;
    std::map<int64_t, std::pair<journal::Request, std::string>> requests;  // by request_id: rows, file
  };
  std::vector<std::string> order;
  std::map<std::string, Run> runs;
  for (const auto& input : inputs) {
    const FileInfo other = read_info(input);
    SPECDEC_CHECK(other.config_text == info.config_text, "merge: '", input,
                  "' was written with a different config than '", inputs[0], "' (",
                  first_difference(info.config_text, other.config_text), ")");
    for (auto& data : read_all(input)) {
      auto [it, fresh] = runs.try_emplace(data.info.name);
      Run& run = it->second;
      if (fresh) {
        order.push_back(data.info.name);
        run.info = data.info;
        run.info_file = input;
      } else {
        SPECDEC_CHECK(run.info.attrs == data.info.attrs, "merge: run '", data.info.name, "' of '", input,
                      "' has other attributes than in '", run.info_file, "'");
      }
      for (auto& r : journal::split_requests(data)) {
        const int64_t id = r.row.request_id;
        auto [rit, added] = run.requests.try_emplace(id, std::move(r), input);
        SPECDEC_CHECK(added, "merge: request ", id, " of run '", data.info.name, "' is in both '", rit->second.second,
                      "' and '", input, "'");
      }
    }
  }

  // Written without SWMR (a killed merge is simply run again) and published by close() alone: a failed
  // merge leaves nothing at `output`.
  Hdf5ResultsLog log(output, info, /*resume=*/false, /*journaled=*/false);
  try {
    std::vector<RunInfo> infos;
    for (const auto& name : order) infos.push_back(runs[name].info);
    log.declare_runs(infos);
    for (const auto& name : order) {
      RunData d;
      for (const auto& [id, r] : runs[name].requests) journal::add_request(d, r.first);
      log.write_bulk(name, d.requests, d.steps, d.draft_tokens, d.outputs);
    }
    log.close();
  } catch (...) {
    log.abandon();
    throw;
  }
}

TimingContext current_timing_context(const std::string& device, int threads) {
  static const std::string invocation = [] {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char when[24];
    std::strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm);
    std::random_device rd;
    char id[kInvocationBytes];
    std::snprintf(id, sizeof id, "%s-%d-%08x", when, static_cast<int>(::getpid()), static_cast<unsigned>(rd()));
    return std::string(id);
  }();
  TimingContext c;
  c.invocation = invocation;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  c.host = std::string(host).substr(0, kHostBytes - 1);
  c.host_cores = static_cast<int32_t>(std::thread::hardware_concurrency());
  double load[1] = {-1};
  c.load_avg = ::getloadavg(load, 1) == 1 ? load[0] : -1;
  c.threads = threads;
  c.device = device.substr(0, kDeviceBytes - 1);
  c.logged_at = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return c;
}

}  // namespace specdec::results
