// The main job's experiment, experiments/configs/default.ini, end to end through the specdec binary on a
// small slice (one prompt per category, 12 tokens): every drafter it names loads (eagle and medusa: the
// shipped weights of artifacts/, checked against the default model's sha256) and decodes exactly AR's tokens,
// and the feature drafters really draft and get tokens accepted.
#include <catch2/catch.hpp>

#include <filesystem>

#include "experiments/results_log.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::test;
namespace fs = std::filesystem;

TEST_CASE("default.ini: every drafter loads and is lossless; eagle and medusa draft from the shipped weights",
          "[runner]") {
  const std::string model = std::string(SPECDEC_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  INFO("the default model is installed by scripts/setup: " << model);
  REQUIRE(fs::exists(model));
  const fs::path out = scratch_dir("default_config") / "default.h5";
  fs::remove(out);
  // Run from the source tree: the config's paths (models/, artifacts/) are relative to it.
  const auto r = run("cd '" + std::string(SPECDEC_SOURCE_DIR) + "' && " + specdec_bin() +
                     " run experiments/configs/default.ini --prompts.per_category=1 --run.max_new_tokens=12 "
                     "--run.k=4 --quiet --out '" +
                     out.string() + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  const auto runs = results::read_all(out.string());
  const results::RunData* ar = nullptr;
  const results::RunData* medusa = nullptr;
  const results::RunData* eagle = nullptr;
  for (const auto& run : runs) {
    if (run.info.name == "ar_t0") ar = &run;
    if (run.info.name.rfind("medusa_", 0) == 0) medusa = &run;
    if (run.info.name.rfind("eagle_", 0) == 0) eagle = &run;
  }
  REQUIRE(ar != nullptr);
  REQUIRE(medusa != nullptr);
  REQUIRE(eagle != nullptr);
  REQUIRE(runs.size() >= 6);  // AR + ngram, early_exit, eagle, medusa, synthetic
  REQUIRE(ar->outputs.size() == 6);
  for (const auto& run : runs) {
    CAPTURE(run.info.name);
    REQUIRE(run.outputs == ar->outputs);  // greedy: every drafter's tokens are AR's
  }
  for (const results::RunData* feature : {eagle, medusa}) {
    CAPTURE(feature->info.name);
    int64_t proposed = 0, accepted = 0;
    for (const auto& s : feature->steps) {
      proposed += s.n_proposed;
      accepted += s.n_accepted;
    }
    CHECK(proposed > 0);
    CHECK(accepted > 0);
  }
}
