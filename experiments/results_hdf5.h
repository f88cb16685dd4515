// Internal to the results log (results_log.cpp, results_read.cpp): RAII handles over the HDF5 C API, the
// one error path for HDF5 failures, the on-disk row layouts of docs/hdf5-schema.md and table I/O.
// Not a public header: only the results log's own sources include it.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "experiments/results_log.h"

namespace specdec::results::h5 {

// An hid_t that closes itself. Move-only.
class Hid {
 public:
  using Closer = herr_t (*)(hid_t);
  Hid() = default;
  Hid(hid_t id, Closer close) : id_(id), close_(close) {}
  Hid(Hid&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Hid& operator=(Hid&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  ~Hid() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles are passed straight to the C API
  bool valid() const { return id_ >= 0; }
  // Closes now and reports the close's result (a file close writes: its failure matters).
  herr_t reset() {
    herr_t r = 0;
    if (id_ >= 0 && close_) r = close_(id_);
    id_ = H5I_INVALID_HID;
    return r;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Silences HDF5's own error printing while in scope (our message replaces it); restores the previous
// handler after, so other HDF5 users in the process keep theirs.
class Quiet {
 public:
  Quiet() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~Quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  Quiet(const Quiet&) = delete;
  Quiet& operator=(const Quiet&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// "results log '<path>': <what> (HDF5: <innermost error of the HDF5 stack>)"; clears the stack.
std::string message(const std::string& path, const std::string& what);

}  // namespace specdec::results::h5

// SPECDEC_H5(call, path, "what failed", ...): evaluates an HDF5 call; a negative result throws
// specdec::Error naming the file, what we were doing and HDF5's own reason. Returns the call's value.
#define SPECDEC_H5(call, path, ...)                                                                   \
  ([&]() {                                                                                            \
    auto r_ = (call);                                                                                 \
    if (r_ < 0) [[unlikely]]                                                                          \
      ::specdec::detail::throw_error(                                                                 \
          __FILE__, __LINE__, ::specdec::results::h5::message((path), ::specdec::detail::concat(__VA_ARGS__))); \
    return r_;                                                                                        \
  }())

namespace specdec::results::h5 {

// ---- on-disk rows (memory layout; the file type is the packed copy) -----------------------------------
struct RequestRec {
  int64_t request_id;
  char prompt_id[kPromptIdBytes];
  char category[kCategoryBytes];
  int32_t repeat, prompt_tokens, new_tokens;
  double wall_time_s, prefill_s, decode_s;
  int32_t steps;
  double tau;
  int8_t stopped;
};
struct StepRec {
  int64_t request_id;
  int32_t step, n_proposed, n_accepted, tree_nodes, max_depth;
  double t_draft_us, t_verify_us;
  int32_t context_len, batch_size;
};
struct DraftRec {
  int64_t request_id;
  int32_t step, node, parent, depth, token;
  float p_target, q_draft, u;
  int8_t visited, accepted;
};
struct OutputRec {
  int64_t request_id;
  int64_t offset;
  int32_t length;
};

// Table names under /runs/<name>/.
inline constexpr const char* kRequests = "requests";
inline constexpr const char* kSteps = "steps";
inline constexpr const char* kDraftTokens = "draft_tokens";
inline constexpr const char* kOutputs = "outputs";
inline constexpr const char* kOutputTokens = "output_tokens";

// Memory and file datatypes of the tables, made per use (cheap) so no HDF5 id outlives a call.
struct Types {
  Types();
  Hid request, step, draft, output;  // memory compounds (native), also used as file types after packing
  Hid request_file, step_file, draft_file, output_file;
  Hid id_only;  // a compound of request_id alone: reads that column of any table
};

RequestRec to_rec(const RequestRow& r, const std::string& path);
StepRec to_rec(const StepRow& r);
DraftRec to_rec(const DraftTokenRow& r);
RequestRow from_rec(const RequestRec& r);
StepRow from_rec(const StepRec& r);
DraftTokenRow from_rec(const DraftRec& r);

// ---- files -----------------------------------------------------------------------------------------
// File access list: latest format (superblock v3, needed for SWMR); clear_flags adds the library's
// "clear_status_flags" property (what h5clear -s uses) so a file left flagged "open for write" by a
// killed writer opens (a read-only open clears the flags in memory only).
Hid file_access(bool clear_flags);
// Opens for reading: SWMR read first (valid while a SWMR writer runs or after it was killed), then a
// plain read-only open that ignores the status flags. Throws naming the file.
Hid open_for_read(const std::string& path);

// ---- attributes -------------------------------------------------------------------------------------
void write_string_attr(const std::string& path, hid_t loc, const std::string& obj, const std::string& name,
                       const std::string& value);
std::string read_string_attr(const std::string& path, hid_t loc, const std::string& obj, const std::string& name);
bool has_attr(hid_t loc, const std::string& name);
std::vector<std::string> attr_names(const std::string& path, hid_t loc, const std::string& obj);
FileInfo read_file_info(const std::string& path, hid_t file);
RunInfo read_run_info(const std::string& path, hid_t file, const std::string& run);
std::vector<std::string> list_runs(const std::string& path, hid_t file);  // creation order

// ---- tables -----------------------------------------------------------------------------------------
std::string run_path(const std::string& run);                           // "/runs/<run>"
std::string table_path(const std::string& run, const char* table);     // "/runs/<run>/<table>"
Hid open_table(const std::string& path, hid_t file, const std::string& run, const char* table);
hsize_t table_size(const std::string& path, hid_t ds, const std::string& obj);
void set_table_size(const std::string& path, hid_t ds, const std::string& obj, hsize_t n);
// Appends n rows of memtype at the end of a 1-D table.
void append_rows(const std::string& path, hid_t ds, const std::string& obj, hid_t memtype, const void* rows,
                 size_t n);
// Reads the whole table as memtype into `out` (sized by the caller via table_size).
void read_rows(const std::string& path, hid_t ds, const std::string& obj, hid_t memtype, void* out);

template <typename Rec>
std::vector<Rec> read_table(const std::string& path, hid_t file, const std::string& run, const char* table,
                            hid_t memtype) {
  Hid ds = open_table(path, file, run, table);
  const std::string obj = table_path(run, table);
  std::vector<Rec> rows(table_size(path, ds, obj));
  if (!rows.empty()) read_rows(path, ds, obj, memtype, rows.data());
  return rows;
}

}  // namespace specdec::results::h5
