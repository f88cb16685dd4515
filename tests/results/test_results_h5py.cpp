// h5py reads the results log as docs/hdf5-schema.md describes it (attributes, table fields, chunked gzip +
// shuffle unlimited tables, outputs -> output_tokens slices), also a file whose writer died mid-run.
// Exits 77 (CTest: skipped) where python3 with h5py is not installed.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "tests/results/results_fixtures.h"
#include "tests/support/assets.h"
#include "tests/support/run.h"

using namespace specdec::test::results;
namespace fs = std::filesystem;

namespace {

const char* kScript = R"PY(
import json, sys, h5py, numpy as np
# A file whose writer was killed (or still writes) keeps the "open for write" flags: SWMR read opens it.
f = h5py.File(sys.argv[1], "r", swmr=(sys.argv[2] == "swmr"), libver="latest")
a = f.attrs
assert int(a["schema_version"]) == 4, a["schema_version"]
for k in ("specdec_version", "config", "host", "seeds", "start_time", "columns"):
    assert isinstance(a[k], str), (k, type(a[k]))
print("config", repr(a["config"]))
print("runs", " ".join(f["runs"].keys()))
# The column list every log carries (derived from experiments/results_schema.h) names each table's fields.
columns = json.loads(a["columns"])
assert columns["schema_version"] == 4, columns["schema_version"]
fields = {t: [c["name"] for c in cols] for t, cols in columns["tables"].items()}
assert "n_emitted" in fields["steps"] and "invocation" in fields["requests"], fields
assert "arrival_s" in fields["requests"], fields
assert all(c in fields["steps"] for c in ("k_policy", "t_forward_us", "batch_step", "t_emit_s", "k_expected")), fields
for name, g in f["runs"].items():
    print("attrs", name, " ".join(f"{k}={g.attrs[k]}" for k in sorted(g.attrs)))
    for t in ("requests", "steps", "draft_tokens", "outputs", "output_tokens"):
        d = g[t]
        assert d.ndim == 1 and d.maxshape == (None,), (t, d.maxshape)
        assert d.chunks is not None and d.compression == "gzip" and d.compression_opts == 4 and d.shuffle, t
        if t == "output_tokens":
            assert d.dtype == np.int32, d.dtype
        else:
            assert list(d.dtype.names) == fields[t], (t, d.dtype.names)
    r = g["requests"][:]
    o = g["outputs"][:]
    toks = g["output_tokens"][:]
    print("rows", name, len(r), len(g["steps"]), len(g["draft_tokens"]), len(o), len(toks))
    for row in r:
        print("request", name, int(row["request_id"]), row["prompt_id"].decode(), row["category"].decode(),
              int(row["new_tokens"]), int(row["steps"]), int(row["stopped"]))
    for row in o:
        if int(row["request_id"]) in set(int(x) for x in r["request_id"]):
            s = toks[row["offset"]:row["offset"] + row["length"]]
            print("tokens", name, int(row["request_id"]), ",".join(str(int(x)) for x in s))
)PY";

// A version 1 log as specdec 1 wrote it (its frozen layout, transcribed): one request of three steps that
// stopped on the first token of its last step.
const char* kWriteV1 = R"PY(
import sys, h5py, numpy as np
req = np.dtype([("request_id", "<i8"), ("prompt_id", "S64"), ("category", "S32"), ("repeat", "<i4"),
                ("prompt_tokens", "<i4"), ("new_tokens", "<i4"), ("wall_time_s", "<f8"), ("prefill_s", "<f8"),
                ("decode_s", "<f8"), ("steps", "<i4"), ("tau", "<f8"), ("stopped", "i1")])
st = np.dtype([("request_id", "<i8"), ("step", "<i4"), ("n_proposed", "<i4"), ("n_accepted", "<i4"),
               ("tree_nodes", "<i4"), ("max_depth", "<i4"), ("t_draft_us", "<f8"), ("t_verify_us", "<f8"),
               ("context_len", "<i4"), ("batch_size", "<i4")])
dr = np.dtype([("request_id", "<i8"), ("step", "<i4"), ("node", "<i4"), ("parent", "<i4"), ("depth", "<i4"),
               ("token", "<i4"), ("p_target", "<f4"), ("q_draft", "<f4"), ("u", "<f4"), ("visited", "i1"),
               ("accepted", "i1")])
out = np.dtype([("request_id", "<i8"), ("offset", "<i8"), ("length", "<i4")])
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["schema_version"] = np.int32(1)
    for k, v in (("specdec_version", "old1234"), ("config", "[model]\npath = stories260K.bin\n\n[sweep]\nk = 1,4\n"),
                 ("host", "{}"), ("seeds", "0,1"), ("start_time", "2024-01-02T03:04:05Z")):
        f.attrs[k] = v
    g = f.create_group("runs").create_group("ngram_k4_t0")
    for k, v in (("drafter", "ngram"), ("k", "4"), ("baseline", "0")):
        g.attrs[k] = v
    def table(name, dtype, rows):
        g.create_dataset(name, data=np.array(rows, dtype=dtype), maxshape=(None,), chunks=(64,))
    table("requests", req, [(0, b"spec_bench:1", b"qa", 0, 7, 5, 0.5, 0.1, 0.4, 3, 8 / 3, 1)])
    table("steps", st, [(0, 0, 4, 2, 0, 4, 1.0, 2.0, 6, 1), (0, 1, 4, 0, 0, 4, 1.0, 2.0, 9, 1),
                        (0, 2, 4, 3, 0, 4, 1.0, 2.0, 10, 1)])
    table("draft_tokens", dr, [(0, 0, i, i - 1, i + 1, 10 + i, 0.5, 1.0, -1.0, 1, int(i < 2)) for i in range(4)])
    table("outputs", out, [(0, 0, 5)])
    g.create_dataset("output_tokens", data=np.array([5, 6, 7, 8, 2], dtype="<i4"), maxshape=(None,), chunks=(64,))
)PY";

bool have_h5py() { return std::system("python3 -c 'import h5py' >/dev/null 2>&1") == 0; }

std::string expected_listing(const std::vector<RunData>& runs) {
  std::ostringstream os;
  for (const auto& r : runs) {
    for (const auto& q : r.requests)
      os << "request " << r.info.name << " " << q.request_id << " " << q.prompt_id << " " << q.category << " "
         << q.new_tokens << " " << q.steps << " " << int(q.stopped) << "\n";
    for (const auto& [id, toks] : r.outputs) {
      os << "tokens " << r.info.name << " " << id << " ";
      for (size_t i = 0; i < toks.size(); ++i) os << (i ? "," : "") << toks[i];
      os << "\n";
    }
  }
  return os.str();
}

// The "request" and "tokens" lines of the script's output, requests first per run (as expected_listing).
std::string listing_of(const std::string& out) {
  std::istringstream is(out);
  std::string line, requests, tokens, run;
  std::ostringstream all;
  auto flush = [&] {
    all << requests << tokens;
    requests.clear();
    tokens.clear();
  };
  while (std::getline(is, line)) {
    if (line.rfind("rows ", 0) == 0) flush();
    if (line.rfind("request ", 0) == 0) requests += line + "\n";
    if (line.rfind("tokens ", 0) == 0) tokens += line + "\n";
  }
  flush();
  return all.str();
}

}  // namespace

TEST_CASE("h5py reads the results log", "[results][h5py]") {
  if (!have_h5py()) {
    std::printf("python3 with h5py not found: skipping (pip install h5py)\n");
    std::exit(77);
  }
  const auto dir = specdec::test::scratch_dir("results_h5py");
  const std::string script = (dir / "read.py").string();
  std::ofstream(script) << kScript;

  SECTION("a closed file") {
    const std::string path = (dir / "closed.h5").string();
    fs::remove(path);
    {
      auto log = ResultsLog::open(path, file_info(), false);
      log->declare_runs({spec_run(), ar_run()});
      for (int64_t id = 0; id < 4; ++id) {
        append_request(*log, spec_run().name, id);
        append_request(*log, ar_run().name, id, 1);
      }
    }
    const auto r = specdec::test::run("python3 " + script + " " + path + " plain");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("runs ngram_k4_t0 ar_t0") != std::string::npos);  // creation order (tracked on /runs)
    CHECK(r.out.find("attrs ngram_k4_t0 baseline=0 drafter=ngram drafter_options=n=3 k=4") != std::string::npos);
    CHECK(r.out.find("config '[model]\\npath = stories260K.bin") != std::string::npos);
    CHECK(listing_of(r.out) == expected_listing(read_all(path)));
  }

  SECTION("another schema_version is refused, naming the file") {
    const std::string path = (dir / "v5.h5").string();
    fs::remove(path);
    {
      auto log = ResultsLog::open(path, file_info(), false);
      log->declare_runs({spec_run()});
      append_request(*log, spec_run().name, 0);
    }
    const auto r = specdec::test::run(
        "python3 -c 'import sys, h5py, numpy as np; "
        "h5py.File(sys.argv[1], \"r+\").attrs[\"schema_version\"] = np.int32(5)' " +
        path);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    for (const auto& f : std::vector<std::function<void()>>{[&] { read_all(path); },
                                                            [&] { ResultsLog::open(path, file_info(), true); }}) {
      std::string err;
      try {
        f();
      } catch (const specdec::Error& e) {
        err = e.what();
      }
      CHECK(err.find(path) != std::string::npos);
      CHECK(err.find("schema_version 5") != std::string::npos);
    }
  }

  SECTION("a version 1 log reads (n_emitted rebuilt, no timing context, no load); merge rewrites it as version 4") {
    const std::string path = (dir / "v1.h5").string(), merged = (dir / "v1_merged.h5").string();
    fs::remove(path);
    fs::remove(merged);
    const std::string v1 = (dir / "write_v1.py").string();
    std::ofstream(v1) << kWriteV1;
    const auto r = specdec::test::run("python3 " + v1 + " " + path);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(read_schema_version(path) == 1);
    const auto runs = read_all(path);
    REQUIRE(runs.size() == 1);
    const RunData& run = runs[0];
    REQUIRE(run.requests.size() == 1);
    CHECK(run.requests[0].invocation.empty());
    CHECK(run.requests[0].load_avg == -1);
    CHECK(run.requests[0].arrival_s == -1);
    REQUIRE(run.steps.size() == 3);
    CHECK(run.steps[0].k_policy == -1);
    CHECK(run.steps[0].batch_step == -1);
    CHECK(run.steps[0].t_emit_s == -1);
    CHECK(run.steps[0].k_expected == -1);
    // steps accepted 2, 0, 3 draft tokens; the request stopped after 5 tokens: the last step emitted 1.
    CHECK(run.steps[0].n_emitted == 3);
    CHECK(run.steps[1].n_emitted == 1);
    CHECK(run.steps[2].n_emitted == 1);
    const std::string err = [&] {
      try {
        ResultsLog::open(path, file_info(), true);
      } catch (const specdec::Error& e) {
        return std::string(e.what());
      }
      return std::string();
    }();
    CHECK(err.find("schema_version 1") != std::string::npos);
    CHECK(err.find("specdec merge") != std::string::npos);
    specdec::results::merge({path}, merged);
    CHECK(read_schema_version(merged) == 4);
    CHECK(diff_runs(read_all(merged), runs, false) == "");
  }

  SECTION("a file whose writer was killed") {
    const std::string path = (dir / "killed.h5").string();
    fs::remove(path);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        auto log = ResultsLog::open(path, file_info(), false);
        log->declare_runs({spec_run()});
        for (int64_t id = 0; id < 3; ++id) append_request(*log, spec_run().name, id);
        specdec::results::testing::crash_in_next_append(specdec::results::testing::CrashPoint::kAfterFirstFlush);
        append_request(*log, spec_run().name, 3);
      } catch (...) {
      }
      std::_Exit(3);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(specdec::test::run("python3 " + script + " " + path + " plain").exit_code != 0);  // flagged
    const auto r = specdec::test::run("python3 " + script + " " + path + " swmr");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("rows ngram_k4_t0 3 ") != std::string::npos);  // the interrupted request has no row
    CHECK(listing_of(r.out) == expected_listing(read_all(path)));
  }
}
