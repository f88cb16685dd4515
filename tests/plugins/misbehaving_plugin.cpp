// Plugins that fail in the ways the loader must survive, one per compile definition (built as MODULE
// libraries by tests/plugins/CMakeLists.txt, loaded by test_plugins):
//   MISBEHAVE_OLD_ABI_UNRESOLVED  reports ABI version SPECDEC_PLUGIN_ABI_VERSION - 1 and calls a function no
//                                 library defines: the version must be refused before any symbol is bound
//   MISBEHAVE_HALF_REGISTER       registers one drafter, then throws a std::runtime_error (not a
//                                 specdec::Error): the registry must stay as it was, the error name the file
//   MISBEHAVE_NULL_FACTORY        registers a drafter whose factory returns no drafter
#include <memory>
#include <stdexcept>

#include "core/speculative/drafter.h"

using namespace specdec;

#ifdef MISBEHAVE_OLD_ABI_UNRESOLVED
extern "C" void specdec_test_symbol_no_library_defines();
#endif

extern "C" __attribute__((visibility("default"))) int specdec_plugin_abi_version() {
#ifdef MISBEHAVE_OLD_ABI_UNRESOLVED
  return SPECDEC_PLUGIN_ABI_VERSION - 1;
#else
  return SPECDEC_PLUGIN_ABI_VERSION;
#endif
}

extern "C" __attribute__((visibility("default"))) void specdec_plugin_register(DrafterRegistry* registry) {
  auto nothing = [](const DrafterEnv&, const DrafterOptions&) { return std::unique_ptr<Drafter>(); };
#ifdef MISBEHAVE_OLD_ABI_UNRESOLVED
  specdec_test_symbol_no_library_defines();
#endif
#ifdef MISBEHAVE_HALF_REGISTER
  registry->add({"half_registered", "registered before the plugin fails", nothing});
  throw std::runtime_error("the second drafter's setup failed");
#endif
#ifdef MISBEHAVE_NULL_FACTORY
  registry->add({"null_drafter", "a factory that returns no drafter", nothing});
#endif
}
