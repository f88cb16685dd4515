// specdec train eagle through the binary: a features file of stories260K, a config with an override, the
// layer file (EAGLE-1 names, d2t) and its metadata, --resume, and the one-line errors for an unknown key, an
// unknown option, a bad draft_vocab and a resume with another config.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "core/sha256.h"
#include "drafters/eagle/eagle.h"
#include "tests/medusa/stories_features.h"
#include "tests/support/run.h"

using namespace specdec;

namespace {

std::string write_config(const std::string& path, const std::string& data, const std::string& out,
                         const std::string& extra = "") {
  std::ofstream(path) << "model = " << test::stories_model() << "\ndata = " << data << "\nout = " << out
                      << "\nepochs = 3\nbatch = 3\nmax_len = 30\nlr = 0.003\nwarmup = 2\nthreads = 1\n"
                      << "checkpoint_every = 5\nheldout_fraction = 0.25\ndraft_vocab = 128\n"
                      << extra;
  return path;
}

bool one_line(const std::string& s) { return test::count_lines(s) == 1; }

}  // namespace

TEST_CASE("specdec train eagle: trains, writes a layer the loader accepts, overrides, resumes, refuses mistakes") {
  const auto dir = test::scratch_dir("cli_train_eagle");
  const std::string sha = train::target_sha256(test::stories_model());
  const std::string data = test::write_stories_features((dir / "stories.features.h5").string(), sha, 40, 8);
  std::filesystem::remove_all(dir / "results");
  const std::string out = (dir / "results" / "eagle.safetensors").string();  // the folder is created
  const std::string cfg = write_config((dir / "train.ini").string(), data, out);
  const std::string bin = test::specdec_bin();

  test::RunResult r = test::run(bin + " train eagle " + cfg + " --epochs 2 --quiet");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("acc@4") && Catch::Contains("wrote " + out));
  const eagle::EagleWeights w = eagle::load_eagle_weights(out, test::stories().model.config(), sha);
  CHECK(w.draft_ids.size() == 128);
  const nlohmann::json meta = nlohmann::json::parse(w.metadata_json);
  CHECK(meta["target_sha256"] == sha);
  CHECK(meta["epochs"] == 2);  // the command line won over the file's 3
  CHECK(meta["accuracy_by_depth"].size() == 4);
  CHECK(meta["data_files"][0]["sha256"] == sha256_file(data));
  CHECK(nlohmann::json::parse(test::slurp(out + ".json")) == meta);
  CHECK(std::filesystem::exists(out + ".ckpt"));

  // --resume from the last checkpoint ends with the same weights.
  r = test::run(bin + " train eagle " + cfg + " --epochs 2 --quiet --resume");
  REQUIRE(r.exit_code == 0);
  const eagle::EagleWeights resumed = eagle::load_eagle_weights(out, test::stories().model.config(), sha);
  CHECK(resumed.fc_w == w.fc_w);
  CHECK(resumed.w_down == w.w_down);
  r = test::run(bin + " train eagle " + cfg + " --epochs 2 --quiet --resume --max_len 20");
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains(out + ".ckpt") && Catch::Contains("max_len = 30"));

  r = test::run(bin + " train eagle " + cfg + " --draft_vocab 3");
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains("draft_vocab = 3: must be 0 (the full vocabulary) or in [topk, V] = [8, 512]"));

  const std::string bad_cfg = write_config((dir / "bad.ini").string(), data, out, "w_kl = 1\n");
  r = test::run(bin + " train eagle " + bad_cfg);
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains("bad.ini: unknown key 'w_kl'") && Catch::Contains("specdec train eagle --help"));

  r = test::run(bin + " train eagle " + cfg + " --max_length 3");
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains("'--max_length'") && Catch::Contains("did you mean --max_len?"));
}
