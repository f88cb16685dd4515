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
import sys, h5py, numpy as np
# A file whose writer was killed (or still writes) keeps the "open for write" flags: SWMR read opens it.
f = h5py.File(sys.argv[1], "r", swmr=(sys.argv[2] == "swmr"), libver="latest")
a = f.attrs
assert int(a["schema_version"]) == 1, a["schema_version"]
for k in ("specdec_version", "config", "host", "seeds", "start_time"):
    assert isinstance(a[k], str), (k, type(a[k]))
print("config", repr(a["config"]))
print("runs", " ".join(f["runs"].keys()))
fields = {
    "requests": ["request_id", "prompt_id", "category", "repeat", "prompt_tokens", "new_tokens", "wall_time_s",
                 "prefill_s", "decode_s", "steps", "tau", "stopped"],
    "steps": ["request_id", "step", "n_proposed", "n_accepted", "tree_nodes", "max_depth", "t_draft_us",
              "t_verify_us", "context_len", "batch_size"],
    "draft_tokens": ["request_id", "step", "node", "parent", "depth", "token", "p_target", "q_draft", "u",
                     "visited", "accepted"],
    "outputs": ["request_id", "offset", "length"],
}
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
    const std::string path = (dir / "v2.h5").string();
    fs::remove(path);
    {
      auto log = ResultsLog::open(path, file_info(), false);
      log->declare_runs({spec_run()});
      append_request(*log, spec_run().name, 0);
    }
    const auto r = specdec::test::run("python3 -c 'import sys, h5py, numpy as np; "
                                      "h5py.File(sys.argv[1], \"r+\").attrs[\"schema_version\"] = np.int32(2)' " +
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
      CHECK(err.find("schema_version 2") != std::string::npos);
    }
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
