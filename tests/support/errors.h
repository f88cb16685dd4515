// error_of(f): the message of the specdec::Error that f throws, for checking with Catch's Contains.
// A throw of anything else, or no throw at all, fails the check and gives "".
// error_or_empty(f): the same message, or "" when f throws nothing (a check of its own decides); anything else
// thrown goes on. one_line_error_of(f): the message, checked to be one line; no throw at all fails the test.
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

template <typename F>
std::string error_or_empty(F&& f) {
  try {
    f();
  } catch (const specdec::Error& e) {
    return e.what();
  }
  return "";
}

template <typename F>
std::string one_line_error_of(F&& f) {
  try {
    f();
  } catch (const specdec::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find('\n') == std::string::npos);
    return msg;
  }
  FAIL("expected a specdec::Error");
  return "";
}

// A non-empty message of one line.
inline bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == std::string::npos; }

}  // namespace specdec::test
