// HDF5 plumbing of the results log: error messages, datatypes of the tables, attributes, table I/O.
// Everything here throws specdec::Error naming the file and the object; the callers hold h5::Quiet.
#include "experiments/results_hdf5.h"

#include <cstring>
#include <filesystem>

namespace specdec::results::h5 {

namespace {

Hid make(hid_t id, Hid::Closer close, const std::string& path, const char* what) {
  if (id < 0) ::specdec::detail::throw_error(__FILE__, __LINE__, message(path, what));
  return Hid(id, close);
}

Hid vl_string() {
  Hid t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

}  // namespace

// A fixed-length, null-terminated UTF-8 string of `bytes` bytes.
Hid fixed_string(size_t bytes) {
  Hid t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, bytes);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

void copy_fixed(char* dst, size_t bytes, const std::string& s, const std::string& path, const char* field) {
  SPECDEC_CHECK(s.size() < bytes, "results log '", path, "': ", field, " '", s, "' is ", s.size(),
                " bytes; the requests table holds at most ", bytes - 1);
  std::memset(dst, 0, bytes);
  std::memcpy(dst, s.data(), s.size());
}

std::string from_fixed(const char* src, size_t bytes) { return std::string(src, strnlen(src, bytes)); }

std::string message(const std::string& path, const std::string& what) {
  const std::string detail = hdf5::innermost_error();
  std::string msg = "results log '" + path + "': " + what;
  if (!detail.empty()) msg += " (HDF5: " + detail + ")";
  return msg;
}

Hid id_only_type() {
  Hid t(H5Tcreate(H5T_COMPOUND, sizeof(int64_t)), H5Tclose);
  H5Tinsert(t, "request_id", 0, H5T_NATIVE_INT64);
  return t;
}

// ---- files -------------------------------------------------------------------------------------------

Hid file_access(bool clear_flags) {
  Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  // A SWMR reader retries a metadata read whose checksum fails (the writer may be mid-write), sleeping
  // longer each time; with the default 100 attempts a damaged file (a writer killed at a bad moment)
  // hangs the reader for hours. A few attempts cover a live writer; a damaged file then fails fast.
  H5Pset_metadata_read_attempts(fapl, 12);
  if (clear_flags) {
    // Registered in 1.10's default file access class; insert it where a build does not register it
    // (H5F_open only looks it up when present).
    hbool_t clear = true;
    if (H5Pexist(fapl, "clear_status_flags") > 0)
      H5Pset(fapl, "clear_status_flags", &clear);
    else
      H5Pinsert2(fapl, "clear_status_flags", sizeof clear, &clear, nullptr, nullptr, nullptr, nullptr, nullptr,
                 nullptr);
  }
  return fapl;
}

Hid open_for_read(const std::string& path) {
  SPECDEC_CHECK(std::filesystem::exists(path), "results log '", path, "' does not exist");
  {
    Hid fapl = file_access(false);
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl);
    if (f >= 0) return Hid(f, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
  }
  Hid fapl = file_access(true);
  return make(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose, path,
              "cannot open for reading (not an HDF5 results log, or damaged)");
}

// ---- attributes --------------------------------------------------------------------------------------

void write_string_attr(const std::string& path, hid_t loc, const std::string& obj, const std::string& name,
                       const std::string& value) {
  const std::string what = "cannot write attribute '" + name + "' of " + obj;
  Hid type = vl_string();
  Hid space = make(H5Screate(H5S_SCALAR), H5Sclose, path, what.c_str());
  Hid attr = make(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, path, what.c_str());
  const char* p = value.c_str();
  SPECDEC_H5(H5Awrite(attr, type, &p), path, what);
}

std::string read_string_attr(const std::string& path, hid_t loc, const std::string& obj, const std::string& name) {
  const std::string what = "cannot read string attribute '" + name + "' of " + obj;
  Hid attr = make(H5Aopen(loc, name.c_str(), H5P_DEFAULT), H5Aclose, path, what.c_str());
  Hid ftype = make(H5Aget_type(attr), H5Tclose, path, what.c_str());
  SPECDEC_CHECK(H5Tget_class(ftype) == H5T_STRING, "results log '", path, "': attribute '", name, "' of ", obj,
                " should be a string");
  if (H5Tis_variable_str(ftype) > 0) {
    Hid type = vl_string();
    char* p = nullptr;
    SPECDEC_H5(H5Aread(attr, type, &p), path, what);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  // Fixed-length (another writer's choice): read as is, drop the padding.
  const size_t n = H5Tget_size(ftype);
  std::string s(n, '\0');
  Hid type(H5Tcopy(ftype), H5Tclose);
  SPECDEC_H5(H5Aread(attr, type, s.data()), path, what);
  s.resize(strnlen(s.data(), n));
  return s;
}

bool has_attr(hid_t loc, const std::string& name) { return H5Aexists(loc, name.c_str()) > 0; }

namespace {
herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> attr_names(const std::string& path, hid_t loc, const std::string& obj) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  SPECDEC_H5(H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &names), path,
             "cannot list the attributes of ", obj);
  return names;
}

FileInfo read_file_info(const std::string& path, hid_t file, int* version_out) {
  SPECDEC_CHECK(has_attr(file, "schema_version"), "results log '", path,
                "' has no schema_version attribute: not a specdec results log");
  Hid attr = make(H5Aopen(file, "schema_version", H5P_DEFAULT), H5Aclose, path, "cannot open /schema_version");
  int32_t version = 0;
  SPECDEC_H5(H5Aread(attr, H5T_NATIVE_INT32, &version), path, "cannot read /schema_version as an int32");
  SPECDEC_CHECK(version >= kOldestSchemaVersion && version <= kSchemaVersion, "results log '", path,
                "' has schema_version ", version, "; this build reads schema_version ", kOldestSchemaVersion, " to ",
                kSchemaVersion, " and writes ", kSchemaVersion);
  if (version_out) *version_out = version;
  FileInfo info;
  info.specdec_version = read_string_attr(path, file, "/", "specdec_version");
  info.config_text = read_string_attr(path, file, "/", "config");
  info.host_json = read_string_attr(path, file, "/", "host");
  info.seeds = read_string_attr(path, file, "/", "seeds");
  info.start_time = read_string_attr(path, file, "/", "start_time");
  return info;
}

RunInfo read_run_info(const std::string& path, hid_t file, const std::string& run) {
  const std::string obj = run_path(run);
  Hid group = make(H5Gopen2(file, obj.c_str(), H5P_DEFAULT), H5Gclose, path, ("cannot open " + obj).c_str());
  RunInfo info;
  info.name = run;
  for (const auto& name : attr_names(path, group, obj)) info.attrs[name] = read_string_attr(path, group, obj, name);
  return info;
}

std::vector<std::string> list_runs(const std::string& path, hid_t file) {
  Hid runs = make(H5Gopen2(file, "/runs", H5P_DEFAULT), H5Gclose, path, "cannot open group /runs");
  H5G_info_t info;
  SPECDEC_H5(H5Gget_info(runs, &info), path, "cannot read group /runs");
  // Creation order is tracked on /runs by our writer; a file without it is listed by name.
  H5_index_t index = H5_INDEX_CRT_ORDER;
  if (info.nlinks > 0 && H5Lget_name_by_idx(runs, ".", index, H5_ITER_INC, 0, nullptr, 0, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    index = H5_INDEX_NAME;
  }
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = SPECDEC_H5(H5Lget_name_by_idx(runs, ".", index, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT), path,
                                 "cannot list /runs");
    std::string name(static_cast<size_t>(n) + 1, '\0');
    SPECDEC_H5(H5Lget_name_by_idx(runs, ".", index, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT), path,
               "cannot list /runs");
    name.resize(static_cast<size_t>(n));
    names.push_back(name);
  }
  return names;
}

// ---- tables ------------------------------------------------------------------------------------------

std::string run_path(const std::string& run) { return "/runs/" + run; }
std::string table_path(const std::string& run, const char* table) { return run_path(run) + "/" + table; }

Hid open_table(const std::string& path, hid_t file, const std::string& run, const char* table) {
  const std::string obj = table_path(run, table);
  return make(H5Dopen2(file, obj.c_str(), H5P_DEFAULT), H5Dclose, path, ("cannot open table " + obj).c_str());
}

hsize_t table_size(const std::string& path, hid_t ds, const std::string& obj) {
  Hid space = make(H5Dget_space(ds), H5Sclose, path, ("cannot read the size of " + obj).c_str());
  SPECDEC_CHECK(H5Sget_simple_extent_ndims(space) == 1, "results log '", path, "': ", obj,
                " should be a one-dimensional table");
  hsize_t n = 0;
  SPECDEC_H5(H5Sget_simple_extent_dims(space, &n, nullptr), path, "cannot read the size of ", obj);
  return n;
}

void set_table_size(const std::string& path, hid_t ds, const std::string& obj, hsize_t n) {
  SPECDEC_H5(H5Dset_extent(ds, &n), path, "cannot resize ", obj, " to ", n, " rows");
}

namespace {
// Transfer list with a 64 KiB conversion buffer. The default (1 MiB, allocated and zeroed by every H5Dwrite
// or H5Dread that converts, and ours do: native compound <-> packed file compound) made an append of a
// few KiB of rows cost milliseconds.
Hid transfer(const std::string& path) {
  Hid dxpl = make(H5Pcreate(H5P_DATASET_XFER), H5Pclose, path, "cannot create a transfer property list");
  SPECDEC_H5(H5Pset_buffer(dxpl, 64 * 1024, nullptr, nullptr), path, "cannot set the conversion buffer size");
  return dxpl;
}
}  // namespace

void append_rows(const std::string& path, hid_t ds, const std::string& obj, hid_t memtype, const void* rows, size_t n) {
  if (n == 0) return;
  const hsize_t start = table_size(path, ds, obj), count = n;
  set_table_size(path, ds, obj, start + count);
  const std::string what = "cannot append " + std::to_string(n) + " rows to " + obj;
  Hid fspace = make(H5Dget_space(ds), H5Sclose, path, what.c_str());
  SPECDEC_H5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &count, nullptr), path, what);
  Hid mspace = make(H5Screate_simple(1, &count, nullptr), H5Sclose, path, what.c_str());
  SPECDEC_H5(H5Dwrite(ds, memtype, mspace, fspace, transfer(path), rows), path, what);
}

void read_rows(const std::string& path, hid_t ds, const std::string& obj, hid_t memtype, void* out) {
  SPECDEC_H5(H5Dread(ds, memtype, H5S_ALL, H5S_ALL, transfer(path), out), path, "cannot read table ", obj);
}

}  // namespace specdec::results::h5
