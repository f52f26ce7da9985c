// ambiseg/io/pickle/numpy.hpp — NumPy arrays, dtypes and scalars rebuilt from their
// documented reduce protocol, without running anything.
//
// A pickle names callables by GLOBAL; known_callable() admits the handful that plain
// containers and NumPy arrays need (numpy 1 and numpy 2 module paths) and numpy_objects
// emulates them: REDUCE of _reconstruct / dtype / scalar / _frombuffer / _codecs.encode /
// bytes, and BUILD of the state of an array or a dtype. Every array's byte count is checked
// against shape × itemsize (with overflow checks) before its payload is used.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/io/dtype.hpp"
#include "ambiseg/io/pickle/value.hpp"

namespace ambiseg::io::pickle {

inline char printable(std::uint8_t b) { return (b >= 32 && b < 127) ? static_cast<char>(b) : '?'; }

// Untrusted text for an error message: printable ASCII, at most 200 characters.
inline std::string printable_name(std::string_view s) {
  std::string out;
  for (char ch : s.substr(0, 200)) out += printable(static_cast<std::uint8_t>(ch));
  return out;
}

// The callable "module.name" stands for, if the reader emulates it.
inline std::optional<callable> known_callable(const std::string& qualified_name) {
  auto is_one_of = [&](std::initializer_list<const char*> names) {
    return std::find_if(names.begin(), names.end(),
                        [&](const char* n) { return qualified_name == n; }) != names.end();
  };
  if (is_one_of({"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}))
    return callable::reconstruct;
  if (is_one_of({"numpy.ndarray"})) return callable::ndarray;
  if (is_one_of({"numpy.dtype"})) return callable::dtype;
  if (is_one_of({"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"}))
    return callable::scalar;
  if (is_one_of({"numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"}))
    return callable::frombuffer;
  if (is_one_of({"_codecs.encode"})) return callable::codecs_encode;
  if (is_one_of({"__builtin__.bytes", "builtins.bytes"})) return callable::bytes;
  return std::nullopt;
}

// REDUCE and BUILD for the known callables; new values live in the document's arena.
class numpy_objects {
 public:
  explicit numpy_objects(document& doc) : doc_(doc) {}

  // fn(*args) for a callable known_callable() admitted.
  value* reduce(const value& fn, const value& args) {
    const auto* g = std::get_if<global_ref>(&fn.v_);
    throw_if<format_error>(!g, "pickle: REDUCE on a ", fn.type_name(), ", not a known callable");
    const char* name = g->qualified_name.c_str();
    switch (g->what) {
      case callable::reconstruct: {  // _reconstruct(ndarray, (0,), b'b'): an empty array to BUILD
        const auto& a = args_of(args, name, 3, 3);
        const auto* cls = std::get_if<global_ref>(&a[0]->v_);
        throw_if<format_error>(!cls || cls->what != callable::ndarray, "pickle: ", name,
                               " of something other than numpy.ndarray");
        return make(std::make_unique<pickle::array>());
      }
      case callable::dtype: {  // dtype('f4', align, copy)
        const auto& a = args_of(args, name, 1, 3);
        throw_if<format_error>(!a[0]->is(kind::str) && !a[0]->is(kind::bytes),
                               "pickle: numpy.dtype of a ", a[0]->type_name());
        return make(parse_dtype(a[0]->text()));
      }
      case callable::scalar: {  // scalar(dtype, bytes): a NumPy scalar becomes a plain number
        const auto& a = args_of(args, name, 2, 2);
        const numpy_dtype& dt = a[0]->as_dtype();
        pickle::array tmp;
        tmp.shape = {1};
        tmp.initialised = true;
        set_payload(tmp, dt, *a[1], name);
        if (is_floating(dt.type)) return make(tmp.element<double>(0));
        if (dt.type == io::dtype::BOOL) return make(tmp.element<bool>(0));
        if (dt.type == io::dtype::U64)
          throw_if<format_error>(tmp.element<std::uint64_t>(0) > INT64_MAX,
                                 "pickle: uint64 scalar does not fit int64");
        return make(tmp.element<std::int64_t>(0));
      }
      case callable::frombuffer: {  // _frombuffer(buffer, dtype, shape, order) (protocol 5)
        const auto& a = args_of(args, name, 4, 4);
        pickle::array arr;
        const numpy_dtype& dt = a[1]->as_dtype();
        arr.shape = read_shape(*a[2], name);
        const std::string_view order = a[3]->text();
        throw_if<format_error>(order != "C" && order != "F", "pickle: ", name, " order '",
                               order.substr(0, 8), "'");
        arr.fortran_order = order == "F";
        set_payload(arr, dt, *a[0], name);
        arr.initialised = true;
        return make(std::make_unique<pickle::array>(std::move(arr)));
      }
      case callable::codecs_encode: {  // _codecs.encode(str, 'latin1'): protocol-2 bytes
        const auto& a = args_of(args, name, 1, 2);
        const std::string& text = a[0]->as_str();
        const std::string encoding = a.size() > 1 ? a[1]->as_str() : "utf-8";
        value::bytes_t b;
        if (encoding == "latin1" || encoding == "latin-1" || encoding == "iso-8859-1")
          b.buffer.own(utf8_to_latin1(text));
        else if (encoding == "utf-8" || encoding == "utf8")
          b.buffer.own(std::vector<std::uint8_t>(text.begin(), text.end()));
        else
          throw format_error("pickle: _codecs.encode with unsupported encoding '" +
                             printable_name(encoding) + "'");
        return make(std::move(b));
      }
      case callable::bytes: {  // bytes(): protocol 2 writes an empty bytes object this way
        args_of(args, name, 0, 0);
        return make(value::bytes_t{});
      }
      case callable::ndarray:
        throw format_error("pickle: calling numpy.ndarray directly is not supported");
    }
    throw format_error("pickle: unknown callable");
  }

  // target.__setstate__(state) for an array or a dtype.
  void build(value& target, const value& state) {
    if (auto* dt = std::get_if<numpy_dtype>(&target.v_)) {
      // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
      throw_if<format_error>(!state.is(kind::tuple), "pickle: dtype state is a ",
                             state.type_name());
      const auto& s = state.items();
      throw_if<format_error>(s.size() < 2, "pickle: dtype state with ", s.size(), " items");
      const std::string_view order = s[1]->text();
      throw_if<format_error>(order.size() != 1 || std::string_view("<>|=").find(order[0]) ==
                                                      std::string_view::npos,
                             "pickle: dtype byte order '", order.substr(0, 8), "'");
      for (std::size_t i = 2; i < std::min<std::size_t>(s.size(), 5); ++i)
        throw_if<format_error>(!s[i]->is_none(),
                               "pickle: structured or sub-array dtypes are not supported");
      const std::size_t itemsize = dtype_size(dt->type);
      throw_if<format_error>(order[0] == '|' && itemsize > 1, "pickle: dtype byte order '|' for ",
                             itemsize, "-byte items");
      if (order[0] != '|') parse_numpy_byte_order(order[0], dt->order);
      return;
    }
    if (auto* holder = std::get_if<std::unique_ptr<pickle::array>>(&target.v_)) {
      pickle::array* arr = holder->get();
      throw_if<format_error>(arr->initialised, "pickle: BUILD on an array that is already built");
      // (version, shape, dtype, is_fortran, data); very old pickles omit the version.
      throw_if<format_error>(!state.is(kind::tuple), "pickle: ndarray state is a ",
                             state.type_name());
      const auto& s0 = state.items();
      throw_if<format_error>(s0.size() != 5 && s0.size() != 4, "pickle: ndarray state with ",
                             s0.size(), " items");
      const value* const* s = s0.data() + (s0.size() - 4);
      arr->shape = read_shape(*s[0], "ndarray state");
      const numpy_dtype& dt = s[1]->as_dtype();
      throw_if<format_error>(!s[2]->is(kind::boolean) && !s[2]->is(kind::integer),
                             "pickle: ndarray is_fortran is a ", s[2]->type_name());
      arr->fortran_order = s[2]->as_int() != 0;
      set_payload(*arr, dt, *s[3], "ndarray state");
      arr->initialised = true;
      return;
    }
    throw format_error(ambiseg::detail::concat("pickle: BUILD on a ", target.type_name(),
                                      " (only NumPy arrays and dtypes are built)"));
  }

 private:
  // dtype('f4'), dtype('<i2'), dtype('?'): NumPy's array-protocol spelling.
  static numpy_dtype parse_dtype(std::string_view spec) {
    const std::string shown = printable_name(spec.substr(0, 16));
    numpy_dtype dt;
    if (!spec.empty() && std::string_view("<>|=").find(spec[0]) != std::string_view::npos) {
      parse_numpy_byte_order(spec[0], dt.order);  // '|' (not applicable) keeps little-endian
      spec.remove_prefix(1);
    }
    if (spec == "?" || spec == "bool") spec = "b1";
    throw_if<format_error>(!parse_numpy_type_code(spec, dt.type), "pickle: unsupported dtype '",
                           shown, "' (numeric bool/int/uint/float only)");
    return dt;
  }

  static const value_list& args_of(const value& args, const char* fn, std::size_t min,
                                   std::size_t max) {
    throw_if<format_error>(!args.is(kind::tuple), "pickle: ", fn, " called with ",
                           args.type_name(), " arguments, expected a tuple");
    const auto& a = args.items();
    throw_if<format_error>(a.size() < min || a.size() > max, "pickle: ", fn, " called with ",
                           a.size(), " arguments");
    return a;
  }

  static std::vector<std::int64_t> read_shape(const value& v, const char* where) {
    throw_if<format_error>(!v.is(kind::tuple) && !v.is(kind::list), "pickle: ", where,
                           " shape is a ", v.type_name());
    const auto& items = v.items();
    throw_if<format_error>(items.size() > 32, "pickle: ", where, " rank ", items.size(),
                           " exceeds NumPy's 32");
    std::vector<std::int64_t> shape;
    std::int64_t total = 1;
    for (const value* e : items) {
      const std::int64_t n = e->as_int();
      throw_if<format_error>(n < 0, "pickle: ", where, " negative extent ", n);
      throw_if<format_error>(n > 0 && total > (std::int64_t{1} << 48) / n, "pickle: ", where,
                             " shape is absurdly large");
      total *= n;
      shape.push_back(n);
    }
    return shape;
  }

  // Sets arr.dtype and fills arr.payload, in host byte order, from raw bytes (checked
  // against shape × itemsize) or from a list of numbers.
  static void set_payload(pickle::array& arr, const numpy_dtype& dt, const value& data,
                          const char* where) {
    const std::int64_t n = arr.numel();
    const std::size_t itemsize = dtype_size(dt.type);
    arr.dtype = dt.type;
    if (data.is(kind::bytes)) {
      const auto& buf = std::get<value::bytes_t>(data.v_).buffer;
      throw_if<format_error>(buf.size / itemsize != static_cast<std::uint64_t>(n) ||
                                 buf.size % itemsize != 0,
                             "pickle: ", where, ": ", buf.size, " bytes for ", n, " items of ",
                             dt.str());
      if (dt.order != std::endian::native && itemsize > 1) {
        std::vector<std::uint8_t> swapped(buf.data, buf.data + buf.size);
        convert_byte_order(swapped.data(), swapped.size() / itemsize, itemsize, dt.order);
        arr.payload.own(std::move(swapped));
      } else {
        arr.payload.data = buf.data;
        arr.payload.size = buf.size;
      }
      return;
    }
    if (data.is(kind::list)) {
      const auto& items = data.items();
      throw_if<format_error>(static_cast<std::int64_t>(items.size()) != n, "pickle: ", where,
                             ": ", items.size(), " list items for ", n, " elements");
      std::vector<std::uint8_t> out(items.size() * itemsize);
      for (std::size_t i = 0; i < items.size(); ++i)
        store_element(dt.type, *items[i], out.data() + i * itemsize);
      arr.payload.own(std::move(out));
      return;
    }
    throw format_error(ambiseg::detail::concat("pickle: ", where, ": array data is a ", data.type_name()));
  }
  static void store_element(io::dtype t, const value& v, std::uint8_t* out) {
    auto put = [out](auto x) { std::memcpy(out, &x, sizeof(x)); };
    if (is_floating(t)) {
      const double d = v.as_float();
      if (t == io::dtype::F64) put(d);
      else if (t == io::dtype::F32) put(static_cast<float>(d));
      else throw format_error("pickle: float16 arrays from lists are not supported");
      return;
    }
    const std::int64_t i = v.as_int();
    switch (dtype_size(t)) {
      case 1: put(static_cast<std::uint8_t>(t == io::dtype::BOOL ? (i != 0) : i)); break;
      case 2: put(static_cast<std::uint16_t>(i)); break;
      case 4: put(static_cast<std::uint32_t>(i)); break;
      default: put(static_cast<std::uint64_t>(i)); break;
    }
  }
  // Protocol 2 stores bytes as the latin-1 str of the same code points, UTF-8 encoded.
  static std::vector<std::uint8_t> utf8_to_latin1(const std::string& s) {
    std::vector<std::uint8_t> out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      const auto c = static_cast<std::uint8_t>(s[i]);
      if (c < 0x80) {
        out.push_back(c);
        ++i;
      } else if ((c & 0xe0) == 0xc0 && i + 1 < s.size() &&
                 (static_cast<std::uint8_t>(s[i + 1]) & 0xc0) == 0x80) {
        const unsigned cp = ((c & 0x1fu) << 6) | (static_cast<std::uint8_t>(s[i + 1]) & 0x3fu);
        throw_if<format_error>(cp > 0xff, "pickle: latin-1 encode of code point ", cp);
        out.push_back(static_cast<std::uint8_t>(cp));
        i += 2;
      } else {
        throw format_error("pickle: latin-1 encode of a character beyond U+00FF or bad UTF-8");
      }
    }
    return out;
  }

  template <class T>
  value* make(T&& v) {
    return doc_.make(std::forward<T>(v));
  }

  document& doc_;
};

}  // namespace ambiseg::io::pickle
