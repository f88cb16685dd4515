// Drafters written in Python behind the C++ Drafter interface (core/speculative/drafter.h): a Python object
// with begin / propose / accept (and optionally features) proposes like any drafter and is checked and
// verified by the same lossless verifier. One adapter for both hosts: the specdec binary (plugin.cpp embeds
// an interpreter) and the Python module (module.cpp, the interpreter already running). Every call into
// Python takes the GIL, so the decode loops run with it released.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <pybind11/pybind11.h>

#include "core/speculative/drafter.h"

namespace specdec::python {

// The drafter "python": option class = MODULE.CLASS names the class; every other option goes to its
// constructor as a keyword argument (a string): CLASS(env, **options), env as drafter_env() makes it.
// (The registry's python:MODULE.CLASS specs are this entry with class set.)
DrafterInfo python_drafter_info();

// A Drafter over a Python drafter object `obj`; name (e.g. "python:mod.Class") starts every error message.
// Throws a one-line error naming the method a drafter lacks, or a vocabulary (obj.vocab_size, when it has
// one) other than the target's.
std::unique_ptr<Drafter> wrap_python_drafter(pybind11::object obj, std::string name, const DrafterEnv& env);

// A drafter made from a Python class as the registry makes python:MODULE.CLASS: CLASS(env, **options), the
// options as keyword strings, wrapped as above. Requires the GIL.
std::unique_ptr<Drafter> make_python_drafter(const pybind11::object& klass, const std::string& name,
                                             const DrafterEnv& env, const std::map<std::string, std::string>& options);

// What a Python drafter's constructor gets: a types.SimpleNamespace with vocab_size, n_layers, hidden_size
// (the target's), temperature, top_k, top_p, seed, drafter_seed (its stream: drafter_seed(seed)), request
// and max_context. Requires the GIL.
pybind11::object drafter_env(const DrafterEnv& env);

}  // namespace specdec::python
