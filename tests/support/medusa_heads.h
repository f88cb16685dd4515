// Medusa heads for a test target: random residual blocks (losslessness needs no trained heads) and a
// made-up accuracy table in the metadata so that tree_nodes can build a tree. Written to the test scratch
// directory once per name and process.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "core/model/config.h"
#include "drafters/medusa/heads.h"

namespace specdec::test {

inline const std::string& random_medusa_heads(const ModelConfig& target, const std::string& name, float scale = 0.05f) {
  static std::map<std::string, std::string> made;
  auto it = made.find(name);
  if (it != made.end()) return it->second;
  medusa::HeadsConfig hc{.n_heads = 4, .n_layers = 1, .hidden_size = target.dim, .vocab_size = target.vocab_size};
  medusa::MedusaHeads h = medusa::init_medusa_heads(hc, 7, scale);
  h.metadata_json = R"({"accuracy_topk": [[0.6, 0.75, 0.8], [0.5, 0.6, 0.65], [0.4, 0.45, 0.5], [0.3, 0.35, 0.4]]})";
  std::filesystem::create_directories(SPECDEC_TEST_SCRATCH);
  const std::string path = std::string(SPECDEC_TEST_SCRATCH) + "/" + name + ".safetensors";
  medusa::save_medusa_heads(h, path);
  return made.emplace(name, path).first->second;
}

}  // namespace specdec::test
