// The write-ahead journal of the results log: <file>.journal beside a results file being written.
// Append-only records, each length-prefixed and CRC-checked: the file's FileInfo, each run as it is
// declared, and each finished request with all its rows, written (and fdatasync'ed) BEFORE the request
// goes into the HDF5 file. A writer killed at any moment leaves a journal whose records up to the torn tail
// are intact; the HDF5 file, whose library rewrites metadata in place, can in rare cases be left damaged
// by a kill at a bad moment. --resume (and `specdec repair`) reconciles the two: a readable HDF5 file that
// agrees with the journal is continued, the requests it lacks are appended from the journal; a damaged
// or disagreeing one is set aside (renamed, never deleted) and rebuilt from the journal. A clean close of
// the results file removes its journal. Internal to the results log.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "experiments/results_log.h"

namespace specdec::results::journal {

std::string path_for(const std::string& results_path);  // "<results_path>.journal"

// One finished request as the HDF5 tables hold it.
struct Request {
  std::string run;
  RequestRow row;
  std::vector<StepRow> steps;
  std::vector<DraftTokenRow> drafts;
  std::vector<TokenId> tokens;
};

struct Contents {
  bool has_info = false;
  FileInfo info;
  std::vector<RunInfo> runs;      // in declaration order
  std::vector<Request> requests;  // in commit order
  uint64_t valid_bytes = 0;       // length of the intact prefix
  uint64_t file_bytes = 0;        // length of the file (> valid_bytes: a torn tail)
};

// Reads every intact record; stops at the first torn or corrupt one (a kill mid-append). Throws only when
// the file cannot be read or is not a journal (wrong magic), naming it.
Contents read(const std::string& journal_path);

// The runs of a journal as RunData (what read_all gives for the HDF5 file it describes).
std::vector<RunData> to_runs(const Contents& c);

// A run's rows grouped by request, in the order of its requests table (rows of a request in file order);
// and back: add_request appends one request's rows to a run's tables.
std::vector<Request> split_requests(const RunData& run);
void add_request(RunData& run, const Request& r);

class Writer {
 public:
  // Creates the journal (an existing file is replaced) with its header and the FileInfo record.
  static Writer create(const std::string& journal_path, const FileInfo& info);
  // Opens an existing journal for appending after its intact prefix (a torn tail is cut off first).
  static Writer append_to(const std::string& journal_path, uint64_t valid_bytes);
  Writer(Writer&& o) noexcept;
  Writer& operator=(Writer&& o) noexcept;
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer();

  void add_run(const RunInfo& run);
  void add_request(const Request& r);  // durable (fdatasync) when it returns
  const std::string& path() const { return path_; }

 private:
  Writer(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  void write_record(uint8_t type, const std::string& payload, bool sync);
  std::string path_;
  int fd_ = -1;
};

}  // namespace specdec::results::journal
