// specdec collect through the binary: a config with stories260K, the summary, one-line errors for a
// misspelt key and an evaluation set, and a run killed with SIGKILL mid-collection then resumed, which
// must equal an uninterrupted run.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "drafters/train/features.h"
#include "tests/support/assets.h"
#include "tests/support/features.h"
#include "tests/support/run.h"

namespace fs = std::filesystem;
using specdec::test::run;
using specdec::test::specdec_bin;

namespace {

fs::path dir() { return specdec::test::scratch_dir("cmd_collect"); }

// n T0-style records of varied lengths.
std::string write_records(int n) {
  const std::string path = (dir() / "train" / ("stories_" + std::to_string(n) + ".jsonl")).string();
  fs::create_directories(fs::path(path).parent_path());
  const char* names[] = {"Tom", "Lily", "Sue", "Ben", "Mia"};
  const char* things[] = {"a red ball", "a big dog", "a little cat", "a blue car", "a tall tree"};
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    std::string completion = std::string(names[(i + 1) % 5]) + " was happy.";
    for (int k = 0; k < i % 4; ++k) completion += " They played in the park all day.";
    out << R"({"prompt": ")" << names[i % 5] << " saw " << things[(i / 5) % 5] << R"(.", "completion": ")" << completion
        << "\"}\n";
  }
  return path;
}

std::string write_config(const std::string& name, const std::string& records, int shard_sequences) {
  const std::string path = (dir() / (name + ".ini")).string();
  std::ofstream(path) << "[target]\nmodel = " << specdec::test::stories_model()
                      << "\ntokenizer = " << specdec::test::stories_tokenizer() << "\n\n[data]\nfiles = " << records
                      << "\nmax_tokens = 96\n\n[output]\ntopk = 4\nshard_sequences = " << shard_sequences << "\n";
  return path;
}

std::string fresh_out(const std::string& name) {
  const std::string out = (dir() / name).string();
  fs::remove(out);
  fs::remove_all(out + ".parts");
  return out;
}

}  // namespace

TEST_CASE("specdec collect: a config runs to a features file and a summary") {
  const std::string cfg = write_config("small", write_records(12), 5);
  const std::string out = fresh_out("small.h5");
  const auto r = run(specdec_bin() + " collect " + cfg + " --out " + out + " --quiet");
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("collected 12 sequences"));
  CHECK_THAT(r.out, Catch::Contains("tokens/s"));
  CHECK_THAT(r.out, Catch::Contains(out + ": 12 sequences"));
  const auto info = specdec::train::read_feature_info(out);
  CHECK(info.n_sequences == 12);
  CHECK(info.topk == 4);
  CHECK_FALSE(info.created_by.empty());
  CHECK_THAT(info.config, Catch::Contains("max_tokens = 96"));

  // Overrides win over the file; running again onto the finished file is refused, --resume is a no-op.
  const std::string out2 = fresh_out("small_override.h5");
  const auto o =
      run(specdec_bin() + " collect " + cfg + " --out " + out2 + " --quiet --data.max_sequences=3 --output.topk 2");
  REQUIRE(o.exit_code == 0);
  CHECK(specdec::train::read_feature_info(out2).n_sequences == 3);
  CHECK(specdec::train::read_feature_info(out2).topk == 2);
  const auto again = run(specdec_bin() + " collect " + cfg + " --out " + out + " --quiet");
  CHECK(again.exit_code != 0);
  CHECK_THAT(again.err, Catch::Contains("exists"));
  const auto resumed = run(specdec_bin() + " collect " + cfg + " --out " + out + " --quiet --resume");
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.out, Catch::Contains("already complete"));
}

TEST_CASE("specdec collect: one-line errors for a misspelt key, a bad value and an evaluation set") {
  const std::string cfg = write_config("errors", write_records(3), 5);
  const std::string out = fresh_out("errors.h5");
  auto r = run(specdec_bin() + " collect " + cfg + " --out " + out + " --data.max_sequence=3");
  CHECK(r.exit_code != 0);
  CHECK(specdec::test::count_lines(r.err) == 1);
  CHECK_THAT(r.err, Catch::Contains("data.max_sequence") && Catch::Contains("did you mean 'data.max_sequences'"));

  r = run(specdec_bin() + " collect " + cfg + " --out " + out + " --data.mode=distill");
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains("data.mode = 'distill'") && Catch::Contains("reference or self"));

  const std::string eval_copy = (dir() / "train" / "questions.jsonl").string();
  fs::copy_file(specdec::test::asset("data/prompts/gsm8k_test.jsonl"), eval_copy, fs::copy_options::overwrite_existing);
  r = run(specdec_bin() + " collect " + cfg + " --out " + out + " --data.files=" + eval_copy);
  CHECK(r.exit_code != 0);
  CHECK(specdec::test::count_lines(r.err) == 1);
  CHECK_THAT(r.err, Catch::Contains(eval_copy) && Catch::Contains("evaluation set gsm8k_test.jsonl"));
  CHECK_FALSE(fs::exists(out + ".parts"));
}

TEST_CASE("specdec collect: killed with SIGKILL, then --resume, equals an uninterrupted run") {
  const std::string records = write_records(800);
  const std::string cfg = write_config("kill", records, 10);
  const std::string whole = fresh_out("kill_whole.h5");
  REQUIRE(run(specdec_bin() + " collect " + cfg + " --out " + whole + " --quiet").exit_code == 0);

  // Kill it once the second shard is on disk (it is complete: shards appear by rename).
  const std::string killed = fresh_out("kill_resumed.h5");
  const std::string parts = killed + ".parts";
  const auto k = run("(" + specdec_bin() + " collect " + cfg + " --out " + killed +
                     " --quiet & pid=$!; for i in $(seq 6000); do [ -e " + parts +
                     "/part-000001.h5 ] && break; sleep 0.01; done; kill -9 $pid; wait $pid; echo status=$?)");
  INFO(k.out << k.err);
  REQUIRE_THAT(k.out, Catch::Contains("status=137"));  // it was still running when killed
  CHECK_FALSE(fs::exists(killed));
  CHECK(fs::exists(fs::path(parts) / "part-000001.h5"));

  const auto r = run(specdec_bin() + " collect " + cfg + " --out " + killed + " --resume --quiet");
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_FALSE(fs::exists(parts));
  const auto a = specdec::train::read_features(whole), b = specdec::train::read_features(killed);
  CHECK(a.n_sequences() == 800);
  specdec::test::check_same_features(a, b);
}
