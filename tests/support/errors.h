// error_of(f): the message of the specdec::Error that f throws, for checking with Catch's Contains.
// A throw of anything else, or no throw at all, fails the check and gives "".
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include "core/error.h"

namespace specdec::test {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const specdec::Error& e) {
    return e.what();
  } catch (...) {
    FAIL_CHECK("threw something other than specdec::Error");
    return "";
  }
  FAIL_CHECK("did not throw");
  return "";
}

}  // namespace specdec::test
