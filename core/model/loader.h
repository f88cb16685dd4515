// Loading a model file of any supported format into a backend-independent LoadedModel.
// Formats: llama2.c checkpoints (version-1 "ak42" export and legacy version 0), GGUF, HF safetensors.
#pragma once

#include <memory>
#include <string>

#include "core/model/config.h"
#include "core/model/weights.h"

namespace specdec {

struct LoadedModel {
  ModelConfig config;
  LlamaWeights weights;
  std::string path;
  std::string format;  // "llama2c-v1", "llama2c-v0", "gguf", "safetensors"
};

// Detects the format from the file's contents (a directory means safetensors + config.json).
// Throws specdec::Error with a one-line message naming the file and what was expected.
std::shared_ptr<const LoadedModel> load_model(const std::string& path);

// Format-specific entry points.
std::shared_ptr<const LoadedModel> load_llama2c(const std::string& path);

}  // namespace specdec
