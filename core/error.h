// specdec::Error and SPECDEC_CHECK: the one error path of the library.
// A failed check throws (never exits) with a one-line message: what was expected and the actual value.
// CUDA, cuBLAS and HDF5 failures are funnelled through the same exception type.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace specdec {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
// Header-only so every target (kernels/cpu included) can throw without a link dependency.
[[noreturn]] inline void throw_error(const char* file, int line, const std::string& msg) {
  std::string one_line = msg;  // users see it verbatim in the CLI: keep it one line
  for (char& c : one_line)
    if (c == '\n' || c == '\r') c = ' ';
  std::string_view f(file);
  if (auto slash = f.rfind('/'); slash != std::string_view::npos) f.remove_prefix(slash + 1);
  throw Error(concat(one_line, " [", f, ":", line, "]"));
}
}  // namespace detail

}  // namespace specdec

// SPECDEC_CHECK(cond, "expected ...", actual...): throws specdec::Error("<msg> [file:line]").
// The message is built only when the check fails.
#define SPECDEC_CHECK(cond, ...)                                                                  \
  do {                                                                                            \
    if (!(cond)) [[unlikely]]                                                                     \
      ::specdec::detail::throw_error(__FILE__, __LINE__, ::specdec::detail::concat(__VA_ARGS__)); \
  } while (0)

#define SPECDEC_FAIL(...) ::specdec::detail::throw_error(__FILE__, __LINE__, ::specdec::detail::concat(__VA_ARGS__))
