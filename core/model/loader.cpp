// load_model: picks the format from the file's contents and hands it to the format's loader.
#include "core/model/loader.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/model/gguf.h"
#include "core/model/safetensors.h"

namespace specdec {

std::shared_ptr<const LoadedModel> load_model(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SPECDEC_CHECK(fs::exists(path, ec), path, ": model file not found");
  const fs::path p(path);
  if (fs::is_directory(p, ec) || p.extension() == ".safetensors" ||
      (path.size() > 11 && path.compare(path.size() - 11, 11, ".index.json") == 0))
    return load_safetensors(path);
  char magic[4] = {0, 0, 0, 0};
  {
    std::ifstream in(path, std::ios::binary);
    in.read(magic, 4);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return load_gguf(path);
  return load_llama2c(path);  // version-1 export ("ak42") or the legacy header; errors name the file
}

}  // namespace specdec
