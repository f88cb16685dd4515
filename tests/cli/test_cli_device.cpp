// --device (experiments/backend.h) through the specdec binary: an unknown device is a one-line error naming
// the value; cuda without CUDA support or without a GPU is a one-line error saying which; on a machine with
// a GPU, --device cuda runs. Also bench verify's table and JSON lines (on the CPU here).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#if SPECDEC_HAVE_CUDA
#include "kernels/cuda/device.h"
#endif
#include "tests/support/run.h"

using namespace specdec::test;

namespace {

std::string stories_args() { return "--model '" + stories_model() + "' --tokenizer '" + stories_tokenizer() + "'"; }

// The one-line error --device cuda gives on this machine, or "" when cuda works here.
std::string expected_cuda_error() {
#if SPECDEC_HAVE_CUDA
  return specdec::cuda::device_count() > 0 ? "" : "no CUDA device found (--device cuda)";
#else
  return "specdec was built without CUDA (--device cuda)";
#endif
}

void check_one_line_error(const RunResult& r, const std::string& expect) {
  INFO(r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code < 128);  // an error exit, not a crash
  CHECK_THAT(r.err, Catch::Contains(expect));
  CHECK(count_lines(r.err) == 1);
}

}  // namespace

TEST_CASE("help texts list --device", "[cli][device]") {
  for (const char* cmd : {" generate --help", " bench decode --help", " bench verify --help"}) {
    const auto r = run(specdec_bin() + cmd);
    INFO(cmd);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("--device"));
  }
  const auto bench = run(specdec_bin() + " bench --help");
  CHECK(bench.exit_code == 0);
  CHECK_THAT(bench.out, Catch::Contains("bench verify"));
}

TEST_CASE("--device tpu is an error naming the value", "[cli][device]") {
  check_one_line_error(run(specdec_bin() + " generate " + stories_args() + " -n 2 --device tpu"),
                       "unknown device 'tpu' (--device)");
  check_one_line_error(run(specdec_bin() + " bench decode " + stories_args() + " --device tpu"),
                       "unknown device 'tpu'");
  check_one_line_error(run(specdec_bin() + " bench verify --model '" + stories_model() + "' --device tpu"),
                       "unknown device 'tpu'");
  check_one_line_error(run(specdec_bin() + " generate " + stories_args() + " -n 2 --device cuda:x"),
                       "unknown device 'cuda:x'");
}

TEST_CASE("--device cuda: a one-line error without CUDA or a GPU, else it runs", "[cli][device]") {
  const std::string expect = expected_cuda_error();
  const auto gen = run(specdec_bin() + " generate " + stories_args() + " -n 8 --device cuda");
  const auto bench = run(specdec_bin() + " bench verify --model '" + stories_model() +
                         "' --device cuda --batch 1 --max-k 1 --context 8 --min-ms 0");
  if (expect.empty()) {
    INFO(gen.err << bench.err);
    CHECK(gen.exit_code == 0);
    CHECK(bench.exit_code == 0);
  } else {
    check_one_line_error(gen, expect);
    check_one_line_error(bench, expect);
    check_one_line_error(run(specdec_bin() + " generate " + stories_args() + " -n 2 --drafter ngram --device cuda"),
                         expect);
  }
}

TEST_CASE("[target] device in a run config", "[cli][device]") {
  const std::string config = std::string(SPECDEC_SOURCE_DIR) + "/experiments/configs/stories_smoke.ini";
  const std::string out = (scratch_dir("cli_device") / "device.h5").string();
  std::filesystem::remove(out);
  check_one_line_error(
      run("OMP_NUM_THREADS=1 " + specdec_bin() + " run '" + config + "' --out '" + out + "' --target.device=tpu"),
      "[target] device = 'tpu': expected cpu, cuda or cuda:N");
  const std::string expect = expected_cuda_error();
  if (!expect.empty())
    check_one_line_error(
        run("OMP_NUM_THREADS=1 " + specdec_bin() + " run '" + config + "' --out '" + out + "' --target.device=cuda"),
        "([target] device cuda)");
}

TEST_CASE("bench verify prints the B x (k+1) cost table and JSON lines", "[cli][bench]") {
  const std::string out = (scratch_dir("cli_device") / "verify.jsonl").string();
  std::filesystem::remove(out);
  const auto r = run("OMP_NUM_THREADS=1 " + specdec_bin() + " bench verify --model '" + stories_model() +
                     "' --device cpu --batch 1,3 --max-k 2 --context 16 --min-ms 0 --out '" + out + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("B=1") && Catch::Contains("B=3") && Catch::Contains("cost"));
  CHECK(count_lines(slurp(out)) == 2 * 3);  // (B = 1, 3) x (k = 0, 1, 2)
  CHECK_THAT(slurp(out), Catch::Contains("\"bench\":\"verify\"") && Catch::Contains("\"cost_vs_1\""));
  const auto bad = run(specdec_bin() + " bench verify --model '" + stories_model() + "' --batch 1,x");
  check_one_line_error(bad, "--batch as a comma-separated list");
  const auto unknown = run(specdec_bin() + " bench frobnicate");
  check_one_line_error(unknown, "decode|verify");
}

TEST_CASE("--version names the commit the binary was built from", "[cli][version]") {
  const RunResult git = run("git -C '" SPECDEC_SOURCE_DIR "' rev-parse --short HEAD");
  if (git.exit_code != 0) {
    WARN("not a git checkout: nothing to compare --version with");
    return;
  }
  std::string sha = git.out;
  while (!sha.empty() && (sha.back() == '\n' || sha.back() == '\r')) sha.pop_back();
  const RunResult r = run(specdec_bin() + " --version");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::StartsWith("specdec " + sha));  // "-dirty" may follow in a working copy
}
