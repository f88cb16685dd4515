// Reading the HDF5 results log (read_info, read_all) and comparing two files' contents (diff_runs), for
// `specdec report`, merge and the tests. Reads never modify a file, and work on one whose writer was
// killed: only finished requests (a requests row with request_id >= 0) and their rows are returned.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "experiments/results_hdf5.h"
#include "experiments/results_log.h"
#include "experiments/results_schema.h"

namespace specdec::results {

using h5::Hid;

FileInfo read_info(const std::string& path) {
  h5::Quiet quiet;
  Hid file = h5::open_for_read(path);
  return h5::read_file_info(path, file);
}

int read_schema_version(const std::string& path) {
  h5::Quiet quiet;
  Hid file = h5::open_for_read(path);
  int version = 0;
  h5::read_file_info(path, file, &version);
  return version;
}

namespace {
// Version 1 logs have no n_emitted: every step emitted n_accepted + 1 tokens except that a stop token or
// the length limit could cut the request's last step, which emitted what new_tokens leaves.
void fill_emitted_v1(RunData& run) {
  std::map<int64_t, int64_t> left;
  for (const auto& q : run.requests) left[q.request_id] = q.new_tokens;
  std::map<int64_t, size_t> last;
  for (size_t i = 0; i < run.steps.size(); ++i) last[run.steps[i].request_id] = i;
  for (size_t i = 0; i < run.steps.size(); ++i) {
    StepRow& s = run.steps[i];
    if (last[s.request_id] != i) {
      s.n_emitted = s.n_accepted + 1;
      left[s.request_id] -= s.n_emitted;
    }
  }
  for (const auto& [id, i] : last) run.steps[i].n_emitted = static_cast<int32_t>(std::max<int64_t>(left[id], 0));
}
}  // namespace

std::vector<RunData> read_all(const std::string& path) {
  h5::Quiet quiet;
  Hid file = h5::open_for_read(path);
  int version = 0;
  h5::read_file_info(path, file, &version);
  std::vector<RunData> out;
  for (const auto& name : h5::list_runs(path, file)) {
    RunData run;
    run.info = h5::read_run_info(path, file, name);
    std::set<int64_t> finished;
    for (auto& r : h5::read_run_table<RequestRow>(path, file, name)) {
      if (r.request_id < 0) continue;  // fill value: the row's data never reached the disk
      finished.insert(r.request_id);
      run.requests.push_back(std::move(r));
    }
    for (auto& r : h5::read_run_table<StepRow>(path, file, name))
      if (finished.count(r.request_id)) run.steps.push_back(r);
    for (auto& r : h5::read_run_table<DraftTokenRow>(path, file, name))
      if (finished.count(r.request_id)) run.draft_tokens.push_back(r);
    std::vector<int32_t> tokens;
    {
      Hid ds = h5::open_table(path, file, name, h5::kOutputTokens);
      const std::string obj = h5::table_path(name, h5::kOutputTokens);
      tokens.resize(h5::table_size(path, ds, obj));
      if (!tokens.empty()) h5::read_rows(path, ds, obj, H5T_NATIVE_INT32, tokens.data());
    }
    for (const auto& o : h5::read_run_table<OutputRow>(path, file, name)) {
      if (!finished.count(o.request_id)) continue;
      SPECDEC_CHECK(o.offset >= 0 && o.length >= 0 && static_cast<size_t>(o.offset + o.length) <= tokens.size(),
                    "results log '", path, "': ", h5::table_path(name, h5::kOutputs), " of request ", o.request_id,
                    " points at tokens [", o.offset, ", ", o.offset + o.length, ") of ", tokens.size(),
                    " (damaged file)");
      run.outputs[o.request_id].assign(tokens.begin() + o.offset, tokens.begin() + o.offset + o.length);
    }
    if (version < 2) fill_emitted_v1(run);
    out.push_back(std::move(run));
  }
  return out;
}

// ---- diff ----------------------------------------------------------------------------------------------

namespace {

// Field-by-field comparison that names the first differing field.
class Differ {
 public:
  explicit Differ(bool ignore_timings) : ignore_timings_(ignore_timings) {}

  template <typename T>
  bool field(const std::string& where, const char* name, const T& a, const T& b, bool timing = false) {
    if (!first_.empty() || (timing && ignore_timings_)) return first_.empty();
    bool same;
    if constexpr (std::is_floating_point_v<T>)
      same = a == b || (std::isnan(a) && std::isnan(b));
    else
      same = a == b;
    if (!same) {
      std::ostringstream os;
      os << where << ": " << name << " " << a << " vs " << b;
      first_ = os.str();
    }
    return same;
  }
  void fail(const std::string& msg) {
    if (first_.empty()) first_ = msg;
  }
  bool ok() const { return first_.empty(); }
  const std::string& result() const { return first_; }

 private:
  bool ignore_timings_;
  std::string first_;
};

// Every column of the row type (results_schema.h), timings marked as such.
template <class Row>
void compare(Differ& d, const std::string& w, const Row& a, const Row& b) {
  schema::for_each_field<Row>([&](const auto& f) { d.field(w, f.name, a.*f.member, b.*f.member, f.timing); });
}

template <typename Row>
std::map<int64_t, std::vector<Row>> by_request(const std::vector<Row>& rows) {
  std::map<int64_t, std::vector<Row>> m;
  for (const auto& r : rows) m[r.request_id].push_back(r);
  return m;
}

template <typename Row>
void compare_rows(Differ& d, const std::string& where, const char* table, const std::vector<Row>& a,
                  const std::vector<Row>& b) {
  if (a.size() != b.size()) {
    d.fail(where + ": " + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + " " + table + " rows");
    return;
  }
  for (size_t i = 0; i < a.size() && d.ok(); ++i)
    compare(d, where + " " + table + " row " + std::to_string(i), a[i], b[i]);
}

void compare_run(Differ& d, const RunData& a, const RunData& b) {
  const std::string run = "run '" + a.info.name + "'";
  if (a.info.attrs != b.info.attrs) return d.fail(run + ": attributes differ");
  std::map<int64_t, const RequestRow*> ra, rb;
  for (const auto& r : a.requests) ra[r.request_id] = &r;
  for (const auto& r : b.requests) rb[r.request_id] = &r;
  for (const auto& [id, r] : ra)
    if (!rb.count(id)) return d.fail(run + ": request " + std::to_string(id) + " only in the first");
  for (const auto& [id, r] : rb)
    if (!ra.count(id)) return d.fail(run + ": request " + std::to_string(id) + " only in the second");
  if (a.requests.size() != ra.size() || b.requests.size() != rb.size())
    return d.fail(run + ": a request id appears twice");
  const auto sa = by_request(a.steps), sb = by_request(b.steps);
  const auto da = by_request(a.draft_tokens), db = by_request(b.draft_tokens);
  const std::vector<StepRow> no_steps;
  const std::vector<DraftTokenRow> no_drafts;
  const std::vector<TokenId> no_tokens;
  auto get = [](const auto& m, int64_t id, const auto& none) -> const auto& {
    auto it = m.find(id);
    return it == m.end() ? none : it->second;
  };
  for (const auto& [id, r] : ra) {
    const std::string where = run + " request " + std::to_string(id);
    compare(d, where, *r, *rb[id]);
    compare_rows(d, where, "steps", get(sa, id, no_steps), get(sb, id, no_steps));
    compare_rows(d, where, "draft_tokens", get(da, id, no_drafts), get(db, id, no_drafts));
    if (get(a.outputs, id, no_tokens) != get(b.outputs, id, no_tokens)) d.fail(where + ": output tokens differ");
    if (!d.ok()) return;
  }
  // Rows of requests that are not in `requests` (read_all never returns such rows; hand-built RunData may).
  for (const auto& [id, rows] : sa)
    if (!ra.count(id)) return d.fail(run + ": steps rows of unknown request " + std::to_string(id));
  for (const auto& [id, rows] : da)
    if (!ra.count(id)) return d.fail(run + ": draft_tokens rows of unknown request " + std::to_string(id));
}

}  // namespace

std::string diff_runs(const std::vector<RunData>& a, const std::vector<RunData>& b, bool ignore_timings) {
  Differ d(ignore_timings);
  std::map<std::string, const RunData*> ma, mb;
  for (const auto& r : a) ma[r.info.name] = &r;
  for (const auto& r : b) mb[r.info.name] = &r;
  for (const auto& [name, r] : ma)
    if (!mb.count(name)) return "run '" + name + "' only in the first";
  for (const auto& [name, r] : mb)
    if (!ma.count(name)) return "run '" + name + "' only in the second";
  for (const auto& [name, r] : ma) {
    compare_run(d, *r, *mb[name]);
    if (!d.ok()) break;
  }
  return d.result();
}

}  // namespace specdec::results
