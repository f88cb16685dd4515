// Finding the tokenizer that belongs to a model: an explicit path (llama2.c tokenizer.bin or HF
// tokenizer.json), the GGUF file's own metadata, or the tokenizer.json beside a safetensors checkpoint.
// Every mismatch between tokenizer and model vocabulary is a one-line error naming both.
#pragma once

#include <memory>
#include <string>

#include "core/model/loader.h"
#include "core/tokenizer/tokenizer.h"

namespace specdec {

// tokenizer_path may be empty when the model carries its tokenizer (GGUF) or has one beside it.
std::unique_ptr<Tokenizer> load_tokenizer(const LoadedModel& model, const std::string& tokenizer_path);

}  // namespace specdec
