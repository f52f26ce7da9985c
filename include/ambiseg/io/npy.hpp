// ambiseg/io/npy.hpp — NumPy .npy files (format versions 1.0, 2.0 and 3.0), hardened.
//
//   read_npy<T>(path)            -> npy_array<T>   values converted to T, C order
//   read_npy_with<T>(path, f)    -> npy_array<T>   f(stored value) -> T does the converting
//   parse_npy<T>(bytes, name)    -> npy_array<T>   the same from memory
//   read_npy_header(path)        -> npy_header     only the header (dtype, order, shape)
//   write_npy(path, data, shape)                   atomically, via io/atomic_file.hpp
//   to_xarray(npy_array<T>&&)    -> xt::xarray<T>  for code that wants xtensor
//
// The reader trusts nothing in the file: the header dict is parsed by hand (it is a Python
// literal, never evaluated), the header length, the shape product and the data size are
// checked against the real file size before any allocation, so a hostile or truncated
// file is an ambiseg::format_error naming the file and the problem, never a crash, a hang
// or a huge allocation. (xtensor's own xnpy.hpp is not used: it trusts the header.)
//
// Stored dtypes: |b1, |u1, |i1, and <i2 <i4 <i8 <u2 <u4 <u8 <f4 <f8 in either byte order
// ('>' is byte-swapped). fortran_order True is transposed to C order on reading.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/io/dtype.hpp"

namespace ambiseg::io {

// The NumPy spellings of the dtypes a .npy file may hold (h.dtype == npy_dtype::float64).
namespace npy_dtype {
inline constexpr dtype bool_ = dtype::BOOL;
inline constexpr dtype uint8 = dtype::U8;
inline constexpr dtype int8 = dtype::I8;
inline constexpr dtype int16 = dtype::I16;
inline constexpr dtype int32 = dtype::I32;
inline constexpr dtype int64 = dtype::I64;
inline constexpr dtype uint16 = dtype::U16;
inline constexpr dtype uint32 = dtype::U32;
inline constexpr dtype uint64 = dtype::U64;
inline constexpr dtype float32 = dtype::F32;
inline constexpr dtype float64 = dtype::F64;
}  // namespace npy_dtype

// C++ type -> stored dtype (the types write_npy accepts and parse_npy can convert to).
template <class T>
struct npy_dtype_of {
  static_assert(has_dtype<T>, "npy: no .npy dtype for this C++ type");
  static constexpr dtype value = dtype_of<T>();
};

template <class T>
concept npy_element = has_dtype<T>;

struct npy_header {
  int major = 1, minor = 0;
  io::dtype dtype = io::dtype::F64;
  bool big_endian = false;      // bytes need swapping on a little-endian host if true
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
  std::int64_t numel = 1;
  std::uint64_t data_offset = 0;  // bytes before the data
};

// What a reader will accept before it refuses a file as absurd.
struct npy_limits {
  std::uint64_t max_header_bytes = 1u << 20;  // numpy itself refuses > 10000 by default
  int max_rank = 32;                          // numpy's NPY_MAXDIMS
};

// An n-d array in C (row-major) order. T = bool is not offered for reading because
// std::vector<bool> has no contiguous storage: read bool files as std::uint8_t (0/1).
template <class T>
struct npy_array {
  std::vector<std::int64_t> shape;
  std::vector<T> data;
  io::dtype stored_dtype = npy_dtype_of<T>::value;  // what the file held

  int rank() const { return static_cast<int>(shape.size()); }
  std::int64_t numel() const { return static_cast<std::int64_t>(data.size()); }
};

namespace detail {

inline constexpr unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

[[noreturn]] inline void npy_fail(const std::string& name, const std::string& what) {
  throw format_error("npy: '" + name + "': " + what);
}

// A recursive-descent parser for the one Python dict literal .npy headers hold.
class npy_header_parser {
 public:
  npy_header_parser(std::string_view text, const std::string& name, const npy_limits& limits)
      : s_(text), name_(name), limits_(limits) {}

  void parse(npy_header& h) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') { ++pos_; break; }
      const std::string key = parse_string("a key");
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (have_descr) fail("duplicate key 'descr'");
        have_descr = true;
        if (peek() == '[') fail("structured dtypes (descr is a list) are not supported");
        parse_descr(parse_string("the 'descr' value"), h);
      } else if (key == "fortran_order") {
        if (have_order) fail("duplicate key 'fortran_order'");
        have_order = true;
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        if (have_shape) fail("duplicate key 'shape'");
        have_shape = true;
        parse_shape(h);
      } else {
        fail("unexpected key '" + key + "' in the header");
      }
      skip_ws();
      const char c = peek();
      if (c == ',') { ++pos_; continue; }
      if (c == '}') { ++pos_; break; }
      fail(std::string("expected ',' or '}' in the header, found ") + describe(c));
    }
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected characters after the header dict");
    if (!have_descr) fail("header has no 'descr' key");
    if (!have_order) fail("header has no 'fortran_order' key");
    if (!have_shape) fail("header has no 'shape' key");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { npy_fail(name_, what); }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  static std::string describe(char c) {
    if (c == '\0') return "the end of the header";
    if (c < 32 || c > 126) return "byte " + std::to_string(static_cast<unsigned char>(c));
    return std::string("'") + c + "'";
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "' in the header, found " + describe(peek()));
    ++pos_;
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  std::string parse_string(const char* what) {
    const char q = peek();
    if (q != '\'' && q != '"') fail(std::string("expected ") + what + " (a quoted string), found " + describe(q));
    const std::size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\') fail("escape sequences are not allowed in the header");
      ++pos_;
    }
    if (pos_ >= s_.size()) fail("unterminated string in the header");
    std::string out(s_.substr(start, pos_ - start));
    ++pos_;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") { pos_ += 4; return true; }
    if (s_.substr(pos_, 5) == "False") { pos_ += 5; return false; }
    fail("'fortran_order' must be True or False");
  }
  std::int64_t parse_dim() {
    if (peek() == '-') fail("negative dimension in 'shape'");
    if (peek() < '0' || peek() > '9') fail("expected an integer in 'shape', found " + describe(peek()));
    std::int64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const int digit = peek() - '0';
      if (v > (std::numeric_limits<std::int64_t>::max() - digit) / 10)
        fail("dimension in 'shape' overflows 64 bits");
      v = v * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long literal, as written by old numpy
    return v;
  }
  void parse_shape(npy_header& h) {
    expect('(');
    h.shape.clear();
    bool trailing_comma = false;
    while (true) {
      skip_ws();
      if (peek() == ')') { ++pos_; break; }
      if (static_cast<int>(h.shape.size()) >= limits_.max_rank)
        fail("rank exceeds the limit of " + std::to_string(limits_.max_rank));
      h.shape.push_back(parse_dim());
      skip_ws();
      trailing_comma = false;
      if (peek() == ',') { ++pos_; trailing_comma = true; continue; }
      if (peek() == ')') { ++pos_; break; }
      fail("expected ',' or ')' in 'shape', found " + describe(peek()));
    }
    // In Python "(3)" is the int 3, not a tuple: numpy would refuse it too.
    if (h.shape.size() == 1 && !trailing_comma) fail("'shape' is not a tuple");
  }
  void parse_descr(const std::string& d, npy_header& h) {
    dtype t{};
    // F16 is a NumPy type, but no C++ type receives it through the conversion functor.
    if (d.size() == 3 && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=') &&
        parse_numpy_type_code(std::string_view(d).substr(1), t) && t != dtype::F16) {
      const bool one_byte = dtype_size(t) == 1;
      if (d[0] == '|' && !one_byte) fail("dtype '" + d + "' needs a byte order");
      std::endian order = std::endian::little;
      parse_numpy_byte_order(d[0], order);
      h.dtype = t;
      h.big_endian = !one_byte && order == std::endian::big;
      return;
    }
    fail("unsupported dtype '" + d + "' (supported: bool, (u)int8/16/32/64, float32, float64)");
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  const std::string& name_;
  const npy_limits& limits_;
};

// Where bytes come from: a file (read in chunks) or memory. Both know their size.
class npy_file_source {
 public:
  explicit npy_file_source(const std::filesystem::path& path) : name_(path.string()) {
    std::error_code ec;
    throw_if<io_error>(!std::filesystem::is_regular_file(path, ec), "npy: '", name_,
                       "' does not exist or is not a regular file");
    file_ = std::fopen(path.c_str(), "rb");
    throw_if<io_error>(!file_, "npy: cannot open '", name_, "' for reading");
    bool ok = ::fseeko(file_, 0, SEEK_END) == 0;
    const off_t end = ok ? ::ftello(file_) : -1;
    ok = ok && end >= 0 && ::fseeko(file_, 0, SEEK_SET) == 0;
    if (!ok) { std::fclose(file_); throw io_error("npy: cannot determine the size of '" + name_ + "'"); }
    size_ = static_cast<std::uint64_t>(end);
  }
  npy_file_source(const npy_file_source&) = delete;
  npy_file_source& operator=(const npy_file_source&) = delete;
  ~npy_file_source() { std::fclose(file_); }

  const std::string& name() const { return name_; }
  std::uint64_t size() const { return size_; }
  // Reads bytes [offset, offset + n); the caller has checked the range against size().
  void read(std::uint64_t offset, void* out, std::size_t n) {
    if (n == 0) return;
    if (offset != position_ && ::fseeko(file_, static_cast<off_t>(offset), SEEK_SET) != 0)
      throw io_error("npy: seek failed in '" + name_ + "'");
    if (std::fread(out, 1, n, file_) != n)
      npy_fail(name_, "read failed (the file shrank while being read?)");
    position_ = offset + n;
  }

 private:
  std::string name_;
  std::FILE* file_ = nullptr;
  std::uint64_t size_ = 0, position_ = 0;
};

class npy_memory_source {
 public:
  npy_memory_source(std::string_view bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  std::uint64_t size() const { return bytes_.size(); }
  void read(std::uint64_t offset, void* out, std::size_t n) {
    if (n) std::memcpy(out, bytes_.data() + offset, n);
  }

 private:
  std::string_view bytes_;
  std::string name_;
};

template <class Source>
npy_header read_header(Source& src, const npy_limits& limits) {
  const std::string& name = src.name();
  if (src.size() < 10) npy_fail(name, "file too short for an .npy header (" + std::to_string(src.size()) + " bytes)");
  unsigned char pre[12] = {};
  src.read(0, pre, 10);
  if (std::memcmp(pre, npy_magic, 6) != 0) npy_fail(name, "bad magic (not an .npy file)");
  npy_header h;
  h.major = pre[6];
  h.minor = pre[7];
  if (h.major < 1 || h.major > 3 || h.minor != 0)
    npy_fail(name, "unsupported format version " + std::to_string(h.major) + "." + std::to_string(h.minor));
  std::uint64_t header_len = 0, prefix = 10;
  if (h.major == 1) {
    header_len = pre[8] | (std::uint64_t(pre[9]) << 8);
  } else {
    if (src.size() < 12) npy_fail(name, "file too short for a version 2/3 header");
    src.read(10, pre + 10, 2);
    prefix = 12;
    header_len = pre[8] | (std::uint64_t(pre[9]) << 8) | (std::uint64_t(pre[10]) << 16) |
                 (std::uint64_t(pre[11]) << 24);
  }
  if (header_len > limits.max_header_bytes)
    npy_fail(name, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                       std::to_string(limits.max_header_bytes) + " bytes");
  if (prefix + header_len > src.size())
    npy_fail(name, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                       std::to_string(src.size()) + " bytes)");
  std::string text(header_len, '\0');
  src.read(prefix, text.data(), header_len);
  if (h.major < 3) {  // versions 1 and 2 promise latin-1 ASCII; a stray byte means damage
    for (unsigned char c : text)
      if (c >= 128 || c == 0) npy_fail(name, "non-ASCII byte in a version 1/2 header");
  }
  npy_header_parser(text, name, limits).parse(h);
  h.data_offset = prefix + header_len;

  // numel and byte count, refusing any product that overflows.
  constexpr std::uint64_t cap = std::uint64_t(1) << 62;
  std::uint64_t numel = 1;
  bool zero = false;
  for (std::int64_t d : h.shape) {
    if (d == 0) zero = true;
    else if (numel > cap / static_cast<std::uint64_t>(d)) npy_fail(name, "shape product overflows");
    else numel *= static_cast<std::uint64_t>(d);
  }
  if (zero) numel = 0;
  const std::uint64_t item = dtype_size(h.dtype);
  if (numel > cap / item) npy_fail(name, "data size overflows");
  const std::uint64_t bytes = numel * item;
  const std::uint64_t available = src.size() - h.data_offset;
  if (available < bytes)
    npy_fail(name, "data is truncated: shape needs " + std::to_string(bytes) + " bytes, file has " +
                       std::to_string(available));
  if (available > bytes)
    npy_fail(name, std::to_string(available - bytes) + " unexpected bytes after the data");
  h.numel = static_cast<std::int64_t>(numel);
  return h;
}

// Calls f with a value-initialised C++ object of the stored type (for dispatch only).
template <class F>
decltype(auto) visit_dtype(dtype t, F&& f) {
  switch (t) {
    case dtype::BOOL: return f(std::uint8_t{});  // stored as bytes; validated 0/1
    case dtype::U8: return f(std::uint8_t{});
    case dtype::I8: return f(std::int8_t{});
    case dtype::I16: return f(std::int16_t{});
    case dtype::I32: return f(std::int32_t{});
    case dtype::I64: return f(std::int64_t{});
    case dtype::U16: return f(std::uint16_t{});
    case dtype::U32: return f(std::uint32_t{});
    case dtype::U64: return f(std::uint64_t{});
    case dtype::F32: return f(float{});
    case dtype::F64: return f(double{});
    default: break;  // the header parser admits no other type
  }
  throw format_error(ambiseg::detail::concat("npy: no reader for dtype ", dtype_name(t)));
}

// Fortran (column-major) data of `shape` -> C (row-major) order.
template <class T>
std::vector<T> fortran_to_c(const std::vector<T>& f, const std::vector<std::int64_t>& shape) {
  std::vector<T> c(f.size());
  const std::size_t rank = shape.size();
  if (f.empty() || rank < 2) return f;
  std::vector<std::int64_t> stride(rank), index(rank, 0);
  std::int64_t s = 1;
  for (std::size_t k = 0; k < rank; ++k) { stride[k] = s; s *= shape[k]; }
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    c[i] = f[static_cast<std::size_t>(offset)];
    for (std::size_t k = rank; k-- > 0;) {  // odometer over the C index, last axis fastest
      if (++index[k] < shape[k]) { offset += stride[k]; break; }
      offset -= stride[k] * (shape[k] - 1);
      index[k] = 0;
    }
  }
  return c;
}

template <class T, class Source, class Convert>
npy_array<T> read_array(Source& src, Convert&& convert, const npy_limits& limits) {
  const npy_header h = read_header(src, limits);
  npy_array<T> out;
  out.shape = h.shape;
  out.stored_dtype = h.dtype;
  out.data.resize(static_cast<std::size_t>(h.numel));
  const std::size_t item = dtype_size(h.dtype);
  const std::endian order = h.big_endian ? std::endian::big : std::endian::little;
  const bool is_bool = h.dtype == dtype::BOOL;
  constexpr std::size_t chunk_items = 1 << 16;
  std::vector<unsigned char> buf(std::min<std::size_t>(chunk_items, out.data.size()) * item);
  visit_dtype(h.dtype, [&]<class U>(U) {
    std::size_t done = 0;
    while (done < out.data.size()) {
      const std::size_t n = std::min(chunk_items, out.data.size() - done);
      src.read(h.data_offset + done * item, buf.data(), n * item);
      for (std::size_t k = 0; k < n; ++k) {
        const U v = load_scalar<U>(buf.data() + k * item, order);
        if constexpr (std::is_same_v<U, std::uint8_t>)
          if (is_bool && v > 1)
            npy_fail(src.name(), "bool element " + std::to_string(done + k) + " holds byte " +
                                     std::to_string(v) + " (not 0 or 1)");
        try {
          out.data[done + k] = convert(v);
        } catch (const error& e) {
          throw value_error("npy: '" + src.name() + "': element " + std::to_string(done + k) +
                            ": " + e.what());
        }
      }
      done += n;
    }
  });
  if (h.fortran_order) out.data = fortran_to_c(out.data, out.shape);
  return out;
}

}  // namespace detail

// The default conversion: exact or refused. Integers must fit the target; floats going to
// an integer type must be finite whole numbers in range; anything -> float/double is a cast.
template <class T>
struct npy_cast {
  static_assert(!std::is_same_v<T, bool>, "npy: read bool data as std::uint8_t (0/1)");
  template <class U>
  T operator()(U v) const {
    if constexpr (std::is_floating_point_v<T>) {
      return static_cast<T>(v);
    } else if constexpr (std::is_floating_point_v<U>) {
      throw_if<value_error>(!std::isfinite(v) || v != std::trunc(v) ||
                                v < static_cast<U>(std::numeric_limits<T>::min()) ||
                                v >= std::ldexp(U(1), std::numeric_limits<T>::digits),
                            "value ", v, " is not representable as the requested integer type");
      return static_cast<T>(v);
    } else {
      throw_if<value_error>(!std::in_range<T>(v), "value ", +v,
                            " is out of range of the requested integer type");
      return static_cast<T>(v);
    }
  }
};

inline npy_header read_npy_header(const std::filesystem::path& path, const npy_limits& limits = {}) {
  detail::npy_file_source src(path);
  return detail::read_header(src, limits);
}

// convert(stored value) -> T is called with the stored C++ type (uint8_t for bool files).
template <class T, class Convert>
npy_array<T> read_npy_with(const std::filesystem::path& path, Convert&& convert,
                           const npy_limits& limits = {}) {
  detail::npy_file_source src(path);
  return detail::read_array<T>(src, std::forward<Convert>(convert), limits);
}

template <class T>
npy_array<T> read_npy(const std::filesystem::path& path, const npy_limits& limits = {}) {
  return read_npy_with<T>(path, npy_cast<T>{}, limits);
}

template <class T, class Convert = npy_cast<T>>
npy_array<T> parse_npy(std::string_view bytes, const std::string& name, Convert&& convert = {},
                       const npy_limits& limits = {}) {
  detail::npy_memory_source src(bytes, name);
  return detail::read_array<T>(src, std::forward<Convert>(convert), limits);
}

// The bytes of an .npy file: version 1.0 (2.0 if the header needs it), header padded with
// spaces to a multiple of 64 bytes and ended by '\n', as numpy writes it.
template <npy_element T>
std::string encode_npy(std::span<const T> data, std::span<const std::int64_t> shape) {
  std::uint64_t numel = 1;
  for (std::int64_t d : shape) {
    throw_if<shape_error>(d < 0, "write_npy: negative extent ", d);
    numel *= static_cast<std::uint64_t>(d);
  }
  throw_if<shape_error>(numel != data.size(), "write_npy: shape holds ", numel,
                        " elements but ", data.size(), " were given");
  constexpr dtype dt = npy_dtype_of<T>::value;
  const char order = sizeof(T) == 1 ? '|' : (std::endian::native == std::endian::little ? '<' : '>');
  std::string dict = "{'descr': '";
  dict += order;
  dict += numpy_type_code(dt);
  dict += "', 'fortran_order': False, 'shape': (";
  for (std::size_t k = 0; k < shape.size(); ++k) {
    dict += std::to_string(shape[k]);
    if (k + 1 < shape.size() || shape.size() == 1) dict += ",";
    if (k + 1 < shape.size()) dict += " ";
  }
  dict += "), }";
  const bool v2 = dict.size() + 1 + 10 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  const std::size_t header_len = total - prefix;
  dict.append(header_len - dict.size() - 1, ' ');
  dict += '\n';

  std::string out(reinterpret_cast<const char*>(detail::npy_magic), 6);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  for (std::size_t b = 0; b < (v2 ? 4u : 2u); ++b) out += static_cast<char>((header_len >> (8 * b)) & 0xff);
  out += dict;
  const std::size_t at = out.size();
  out.resize(at + data.size() * sizeof(T));
  if (!data.empty()) {
    if constexpr (std::is_same_v<T, bool>) {
      for (std::size_t i = 0; i < data.size(); ++i) out[at + i] = data[i] ? 1 : 0;
    } else {
      std::memcpy(out.data() + at, data.data(), data.size() * sizeof(T));
    }
  }
  return out;
}

template <npy_element T>
void write_npy(const std::filesystem::path& path, std::span<const T> data,
               std::span<const std::int64_t> shape) {
  write_file_atomically(path, encode_npy<T>(data, shape));
}
template <npy_element T>
void write_npy(const std::filesystem::path& path, const std::vector<T>& data,
               const std::vector<std::int64_t>& shape) {
  write_npy<T>(path, std::span<const T>(data.data(), data.size()), std::span<const std::int64_t>(shape));
}
template <npy_element T>
void write_npy(const std::filesystem::path& path, const npy_array<T>& a) {
  write_npy<T>(path, a.data, a.shape);
}
// Any row-major xtensor container (xt::xarray, xt::xtensor) of a supported type.
template <class E>
  requires npy_element<typename E::value_type> && requires(const E& e) { e.data(); e.shape(); }
void write_npy(const std::filesystem::path& path, const E& e) {
  using T = typename E::value_type;
  throw_if<value_error>(e.layout() != xt::layout_type::row_major, "write_npy: '", path.string(),
                        "': only row-major containers can be written");
  std::vector<std::int64_t> shape(e.shape().begin(), e.shape().end());
  write_npy<T>(path, std::span<const T>(e.data(), e.size()), std::span<const std::int64_t>(shape));
}

template <class T>
xt::xarray<T> to_xarray(npy_array<T>&& a) {
  std::vector<std::size_t> shape(a.shape.begin(), a.shape.end());
  xt::xarray<T> out = xt::adapt(a.data, shape);
  return out;
}

}  // namespace ambiseg::io
