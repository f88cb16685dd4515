// h5py reads a features file of specdec collect as docs/training-data.md describes it: hidden as numpy
// float16 with the values read_features returns, every dataset's dtype and shape, the attributes as str,
// sources as JSON. Exits 77 (CTest: skipped) where python3 with h5py is not installed.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "drafters/train/collect.h"
#include "drafters/train/features.h"
#include "tests/support/assets.h"
#include "tests/support/run.h"

namespace fs = std::filesystem;
using namespace specdec::train;

namespace {

const char* kScript = R"PY(
import json, sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
a = f.attrs
assert a["format"] == "specdec-features", a["format"]
assert int(a["version"]) == 1
H, V, K = int(a["hidden_size"]), int(a["vocab_size"]), int(a["topk"])
for k in ("feature", "target_path", "target_sha256", "sources", "created_by"):
    assert isinstance(a[k], str), (k, type(a[k]))
assert a["feature"] == "final_norm"
src = json.loads(a["sources"])
assert src["mode"] == "reference" and len(src["files"]) == 1 and len(src["files"][0]["sha256"]) == 64, src
tokens, offsets, plen = f["tokens"][:], f["offsets"][:], f["prompt_len"][:]
hidden, ids, probs = f["hidden"][:], f["topk_ids"][:], f["topk_probs"][:]
assert tokens.dtype == np.int32 and offsets.dtype == np.int64 and plen.dtype == np.int32
assert hidden.dtype == np.float16, hidden.dtype
assert ids.dtype == np.int32 and probs.dtype == np.float32
N, S = len(tokens), len(plen)
assert hidden.shape == (N, H) and ids.shape == (N, K) and probs.shape == (N, K)
assert offsets.shape == (S + 1,) and offsets[0] == 0 and offsets[-1] == N
assert np.all(np.diff(offsets) > plen)
assert np.all(np.diff(probs, axis=1) <= 0) and np.all(probs.sum(axis=1) <= 1.0001)
print("rows", N, "sequences", S, "H", H, "K", K)
print("tokens", ",".join(str(int(t)) for t in tokens))
print("hidden_sum %.9e" % hidden.astype(np.float64).sum())
print("hidden_abs_sum %.9e" % np.abs(hidden.astype(np.float64)).sum())
print("ids_sum", int(ids.astype(np.int64).sum()))
)PY";

}  // namespace

TEST_CASE("h5py reads a features file as float16 with the values read_features returns") {
  if (std::system("python3 -c 'import h5py' >/dev/null 2>&1") != 0) {
    std::printf("python3 with h5py not found: skipping (pip install h5py)\n");
    std::exit(77);
  }
  const auto dir = specdec::test::scratch_dir("features_h5py");
  const std::string records = (dir / "train" / "tiny.jsonl").string();
  fs::create_directories(fs::path(records).parent_path());
  std::ofstream(records)
      << R"({"prompt": "Once upon a time there was a cat.", "completion": "The cat liked milk."})"
         "\n"
         R"({"prompt": "Sam had a red ball.", "completion": "He threw it to his dog and the dog ran."})"
         "\n";
  CollectConfig cfg;
  cfg.model = specdec::test::stories_model();
  cfg.tokenizer = specdec::test::stories_tokenizer();
  cfg.prompt_files = {records};
  cfg.topk = 6;
  cfg.created_by = "test";
  cfg.out = (dir / "features.h5").string();
  fs::remove(cfg.out);
  fs::remove_all(cfg.out + ".parts");
  REQUIRE(collect(cfg).complete);
  const FeatureData d = read_features(cfg.out);

  const std::string script = (dir / "read.py").string();
  std::ofstream(script) << kScript;
  const auto r = specdec::test::run("python3 " + script + " " + cfg.out);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);

  double sum = 0, abs_sum = 0;
  for (float x : d.hidden) {
    sum += x;
    abs_sum += std::abs(static_cast<double>(x));
  }
  long long ids_sum = 0;
  for (int32_t id : d.topk_ids) ids_sum += id;
  std::string tokens;
  for (size_t i = 0; i < d.tokens.size(); ++i) tokens += (i ? "," : "") + std::to_string(d.tokens[i]);
  char line[128];
  std::snprintf(line, sizeof line, "rows %lld sequences %d H %d K %d", static_cast<long long>(d.n_rows()),
                d.n_sequences(), d.hidden_size, d.topk);
  CHECK_THAT(r.out, Catch::Contains(line));
  CHECK_THAT(r.out, Catch::Contains("tokens " + tokens + "\n"));
  // float16 values summed in double in the same order on both sides: equal to the last digit printed.
  std::snprintf(line, sizeof line, "hidden_sum %.9e", sum);
  CHECK_THAT(r.out, Catch::Contains(line));
  std::snprintf(line, sizeof line, "hidden_abs_sum %.9e", abs_sum);
  CHECK_THAT(r.out, Catch::Contains(line));
  CHECK_THAT(r.out, Catch::Contains("ids_sum " + std::to_string(ids_sum)));
}
