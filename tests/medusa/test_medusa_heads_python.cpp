// Medusa heads files and the Python safetensors library (the format's reference implementation): it reads
// what save_medusa_heads writes (names, shapes, values, the "specdec" metadata), and load_medusa_heads reads
// a Medusa-layout file it writes in float16. Exits 77 (CTest: skipped) without python3 + safetensors + numpy.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "drafters/medusa/heads.h"
#include "tests/support/assets.h"
#include "tests/support/random.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::medusa;

namespace {

const char* kReadScript = R"PY(
import json, sys, numpy as np
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    meta = json.loads(f.metadata()["specdec"])
    for name in sorted(f.keys()):
        t = f.get_tensor(name)
        assert t.dtype == np.float32, (name, t.dtype)
        print(name, "x".join(map(str, t.shape)), "%.9e" % t.astype(np.float64).sum())
print("target_sha256", meta["target_sha256"])
)PY";

const char* kWriteScript = R"PY(
import sys, numpy as np
from safetensors.numpy import save_file
H, V = 16, 64
t = {}
for k in range(2):
    rng = np.random.default_rng(k)
    t[f"medusa_head.{k}.0.linear.weight"] = (np.round(rng.normal(size=(H, H)) * 64) / 64).astype(np.float16)
    t[f"medusa_head.{k}.0.linear.bias"] = (np.round(rng.normal(size=H) * 64) / 64).astype(np.float16)
    t[f"medusa_head.{k}.1.weight"] = (np.round(rng.normal(size=(V, H)) * 64) / 64).astype(np.float16)
save_file(t, sys.argv[1])
for name in sorted(t):
    print(name, "%.9e" % t[name].astype(np.float64).sum())
)PY";

std::string sum_text(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9e", s);
  return buf;
}

}  // namespace

TEST_CASE("the Python safetensors library reads specdec's heads files and writes Medusa-layout ones we read") {
  if (std::system("python3 -c 'import safetensors, numpy' >/dev/null 2>&1") != 0) {
    std::printf("python3 with safetensors and numpy not found: skipping (pip install safetensors numpy)\n");
    std::exit(77);
  }
  const auto dir = test::scratch_dir("medusa_heads_python");
  const std::string read_py = (dir / "read.py").string(), write_py = (dir / "write.py").string();
  std::ofstream(read_py) << kReadScript;
  std::ofstream(write_py) << kWriteScript;

  HeadsConfig c{2, 2, 16, 64, false};
  MedusaHeads h = init_medusa_heads(c, 3, 0.25f);
  for (size_t i = 0; i < h.b.size(); ++i) h.b[i] = test::randn(16, 40 + static_cast<uint32_t>(i));
  h.metadata_json = R"({"target_sha256":"feed","hidden_size":16,"vocab_size":64})";
  const std::string ours = (dir / "ours.safetensors").string();
  save_medusa_heads(h, ours);
  test::RunResult r = test::run("python3 " + read_py + " " + ours);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::string expected;
  for (int k = 0; k < 2; ++k)
    for (int l = 0; l < 2; ++l) {
      const std::string prefix = "heads." + std::to_string(k) + ".blocks." + std::to_string(l);
      expected += prefix + ".bias 16 " + sum_text(h.b[k * 2 + l]) + "\n";
      expected += prefix + ".weight 16x16 " + sum_text(h.w[k * 2 + l]) + "\n";
    }
  expected += "target_sha256 feed\n";
  CHECK(r.out == expected);

  const std::string theirs = (dir / "theirs.safetensors").string();
  r = test::run("python3 " + write_py + " " + theirs);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  ModelConfig target;
  target.dim = 16;
  target.vocab_size = 64;
  const MedusaHeads m = load_medusa_heads(theirs, target);
  CHECK(m.cfg.n_heads == 2);
  CHECK(m.cfg.n_layers == 1);
  CHECK(m.cfg.own_lm_head);
  std::string got;
  for (int k = 0; k < 2; ++k) {
    const std::string prefix = "medusa_head." + std::to_string(k);
    got += prefix + ".0.linear.bias " + sum_text(m.b[k]) + "\n";
    got += prefix + ".0.linear.weight " + sum_text(m.w[k]) + "\n";
    got += prefix + ".1.weight " + sum_text(m.lm_head[k]) + "\n";
  }
  CHECK(r.out == got);
}
