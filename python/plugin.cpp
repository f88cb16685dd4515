// libspecdec_python.so: the drafter plugin the specdec binary loads for python:MODULE.CLASS drafters
// (DrafterRegistry::resolve). It embeds a Python interpreter, so libpython stays out of specdec's core and
// binary: only a program that asks for a Python drafter loads it. It registers the drafter "python"
// (drafter_adapter.h) through the ordinary plugin ABI.
#include <Python.h>
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "python/drafter_adapter.h"

namespace {

// The interpreter whose environment (a venv's site-packages: numpy, the user's modules) Python drafters
// get: SPECDEC_PYTHON_EXECUTABLE, else the one specdec was built with (the project's .venv).
std::string interpreter_path() {
  if (const char* env = std::getenv("SPECDEC_PYTHON_EXECUTABLE"); env && *env) return env;
  return SPECDEC_PYTHON_EXECUTABLE;
}

// Starts the interpreter once per process (the plugin is loaded once) and releases the GIL: every call of
// the adapter takes it, from whichever thread decodes.
void start_interpreter() {
  if (Py_IsInitialized()) return;
  // This plugin was loaded RTLD_LOCAL, and libpython with it; extension modules (numpy) expect libpython's
  // symbols in the global scope, so make them global before anything is imported.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&Py_InitializeFromConfig), &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
  const std::string exe = interpreter_path();
  SPECDEC_CHECK(
      std::filesystem::exists(exe), "python: drafters: the Python interpreter ", exe,
      " does not exist (set SPECDEC_PYTHON_EXECUTABLE to the interpreter whose packages Python drafters use)");
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;  // Ctrl-C stays specdec's
  // program_name = that interpreter: Python finds its prefix (and a venv's pyvenv.cfg) from it.
  PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, exe.c_str());
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  SPECDEC_CHECK(!PyStatus_Exception(status), "python: drafters: cannot start the Python interpreter ", exe, " (",
                status.err_msg ? status.err_msg : "unknown error", ")");
  // Modules in the current directory import as they would under `python -m`.
  PyRun_SimpleString("import os, sys; sys.path.insert(0, os.getcwd())");
  PyEval_SaveThread();
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int specdec_plugin_abi_version() {
  return SPECDEC_PLUGIN_ABI_VERSION;
}

extern "C" __attribute__((visibility("default"))) void specdec_plugin_register(specdec::DrafterRegistry* registry) {
  start_interpreter();
  registry->add(specdec::python::python_drafter_info());
}
