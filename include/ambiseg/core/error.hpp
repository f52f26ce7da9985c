// ambiseg/core/error.hpp — the one exception type of the library.
//
// Every precondition that a user can violate (a shape, a NaN, a corrupt file) throws
// ambiseg::error with a message that names the operation and the offending values.
// Internal invariants use assert; user input never does.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace ambiseg {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Specific kinds, so that callers can tell a bad file from a bad shape.
class shape_error : public error { public: using error::error; };
class value_error : public error { public: using error::error; };
class io_error : public error { public: using error::error; };
class format_error : public io_error { public: using io_error::io_error; };

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// throw_if<E>(cond, "op: ", what, ...) — builds the message only when it throws.
template <class E = error, class... Args>
inline void throw_if(bool condition, Args&&... message) {
  if (condition) [[unlikely]]
    throw E(detail::concat(std::forward<Args>(message)...));
}

// C++20 dependent false for primary templates that must be specialised.
template <class...>
inline constexpr bool dependent_false = false;

}  // namespace ambiseg
