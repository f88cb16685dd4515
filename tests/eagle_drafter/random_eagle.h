// A random EAGLE layer of a test target's shape (losslessness needs no trained layer), written to the test
// scratch directory once per name and process; optionally with a reduced draft vocabulary.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "core/model/config.h"
#include "drafters/eagle/eagle.h"

namespace specdec::test {

inline const std::string& random_eagle_weights(const ModelConfig& target, const std::string& name, float scale = 0.05f,
                                               std::vector<int32_t> draft_ids = {}) {
  static std::map<std::string, std::string> made;
  auto it = made.find(name);
  if (it != made.end()) return it->second;
  eagle::EagleWeights w = eagle::init_eagle_weights(eagle::EagleConfig::of_target(target), 11, scale);
  w.draft_ids = std::move(draft_ids);
  std::filesystem::create_directories(SPECDEC_TEST_SCRATCH);
  const std::string path = std::string(SPECDEC_TEST_SCRATCH) + "/" + name + ".safetensors";
  eagle::save_eagle_weights(w, path);
  return made.emplace(name, path).first->second;
}

}  // namespace specdec::test
