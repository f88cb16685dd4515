// Test assets (stories260K, prompt sets) resolve from SPECDEC_ASSETS (set by CTest from the configure-time
// SPECDEC_ASSETS_DIR, which scripts/setup points at ../shared or a downloaded copy).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace specdec::test {

inline std::filesystem::path assets_dir() {
  const char* env = std::getenv("SPECDEC_ASSETS");
  if (env && *env) return env;
  return SPECDEC_TEST_ASSETS_DEFAULT;
}
inline std::string asset(const std::string& rel) { return (assets_dir() / rel).string(); }
inline std::string stories_model() { return asset("models/stories260K/stories260K.bin"); }
inline std::string stories_tokenizer() { return asset("models/stories260K/tok512.bin"); }

// A scratch folder for one test binary (under the build tree).
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::path(SPECDEC_TEST_SCRATCH) / name;
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace specdec::test
