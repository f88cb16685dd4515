// specdec train medusa through the binary: a features file of stories260K written with FeatureWriter, a
// config with an override, the heads file and its metadata, --resume, train_vocab, and the one-line errors
// for an unknown key, an unknown option, a bad train_vocab and features of another target.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "core/sha256.h"
#include "drafters/medusa/heads.h"
#include "drafters/train/features.h"
#include "tests/medusa/stories_features.h"
#include "tests/support/run.h"

using namespace specdec;

namespace {

constexpr int kTopK = 8;

std::string write_features(const std::string& path, const std::string& target_sha) {
  return test::write_stories_features(path, target_sha, 40, kTopK);
}

std::string write_config(const std::string& path, const std::string& data, const std::string& out,
                         const std::string& extra = "") {
  std::ofstream(path) << "model = " << test::stories_model() << "\ndata = " << data << "\nout = " << out
                      << "\nheads = 3\nepochs = 2\nbatch = 64\nlr = 0.003\nwarmup = 4\nthreads = 1\n"
                      << "checkpoint_every = 7\nheldout_fraction = 0.25\n"
                      << extra;
  return path;
}

bool one_line(const std::string& s) { return test::count_lines(s) == 1; }

}  // namespace

TEST_CASE("specdec train medusa: trains, writes heads the loader accepts, overrides, resumes, refuses mistakes") {
  const auto dir = test::scratch_dir("cli_train_medusa");
  const std::string sha = train::target_sha256(test::stories_model());
  const std::string data = write_features((dir / "stories.features.h5").string(), sha);
  std::filesystem::remove_all(dir / "results");
  const std::string out = (dir / "results" / "heads.safetensors").string();  // the folder is created
  const std::string cfg = write_config((dir / "train.ini").string(), data, out);
  const std::string bin = test::specdec_bin();

  test::RunResult r = test::run(bin + " train medusa " + cfg + " --heads 2 --quiet");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("heldout_loss") && Catch::Contains("wrote " + out));
  const medusa::MedusaHeads heads = medusa::load_medusa_heads(out, test::stories().model.config(), sha);
  CHECK(heads.cfg.n_heads == 2);  // the command line won over the file's 3
  const nlohmann::json meta = nlohmann::json::parse(heads.metadata_json);
  CHECK(meta["target_sha256"] == sha);
  CHECK(meta["accuracy_topk"].size() == 2);
  CHECK(meta["data_files"][0]["sha256"] == sha256_file(data));
  CHECK(nlohmann::json::parse(test::slurp(out + ".json")) == meta);
  CHECK(std::filesystem::exists(out + ".ckpt"));

  // --resume from the last checkpoint ends with the same weights.
  r = test::run(bin + " train medusa " + cfg + " --heads 2 --quiet --resume");
  REQUIRE(r.exit_code == 0);
  const medusa::MedusaHeads resumed = medusa::load_medusa_heads(out, test::stories().model.config(), sha);
  CHECK(resumed.w == heads.w);
  CHECK(resumed.b == heads.b);

  // train_vocab: the training loss over 64 of the 512 ids, said in the epoch table and the metadata.
  const std::string subset_out = (dir / "results" / "subset.safetensors").string();
  r = test::run(bin + " train medusa " + cfg + " --quiet --train_vocab 64 --checkpoint_every 0 --out " + subset_out);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out,
             Catch::Contains("train_vocab = 64 (") && Catch::Contains("held-out figures over the full vocabulary"));
  const nlohmann::json subset_meta = nlohmann::json::parse(test::slurp(subset_out + ".json"));
  CHECK(subset_meta["train_vocab"] == 64);
  CHECK(subset_meta["train_vocab_coverage"].get<double>() > 0.0);
  CHECK(subset_meta["train_vocab_coverage"].get<double>() <= 1.0);
  CHECK(subset_meta["accuracy_topk"].size() == 3);
  r = test::run(bin + " train medusa " + cfg + " --train_vocab 3");
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains("train_vocab = 3: must be 0 (the full vocabulary) or in [topk, V] = [8, 512]"));

  const std::string bad_cfg = write_config((dir / "bad.ini").string(), data, out, "lerning_rate = 1\n");
  r = test::run(bin + " train medusa " + bad_cfg);
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains("bad.ini: unknown key 'lerning_rate'"));

  r = test::run(bin + " train medusa " + cfg + " --epoch 3");
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains("'--epoch'") && Catch::Contains("did you mean --epochs?"));

  const std::string other = write_features((dir / "other.features.h5").string(), std::string(64, 'a'));
  r = test::run(bin + " train medusa " + cfg + " --data " + other);
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.err));
  CHECK_THAT(r.err, Catch::Contains(other) && Catch::Contains("features of the target with sha256 aaaa"));

  r = test::run(bin + " train hydra " + cfg);
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains("unknown drafter to train; known: medusa, eagle"));
}
