// ambiseg/io/pickle/value.hpp — the values a restricted pickle reader produces.
//
// A document owns every value (an arena, so shared references from the memo and even
// reference cycles are harmless) and the input bytes (memory-mapped for files), so array
// and bytes payloads point into the input without a copy. Values are read-only to users;
// the opcode machine (pickle/machine.hpp) and the NumPy reduce protocol (pickle/numpy.hpp)
// build them.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <sys/mman.h>

#include "ambiseg/core/error.hpp"
#include "ambiseg/io/dtype.hpp"

namespace ambiseg::io::pickle {

static_assert(std::endian::native == std::endian::little,
              "ambiseg::io::pickle converts array payloads to little-endian host order");

// A pickled numpy.dtype: the element type (numeric bool/int/uint/float, as a segmentation
// data set holds) and the byte order of the array bytes it describes.
struct numpy_dtype {
  io::dtype type = io::dtype::U8;
  std::endian order = std::endian::little;
  std::string str() const { return numpy_descr(type, order); }
};

// A contiguous byte payload: a view into the document's input, or owned storage when it
// had to be converted (byte-swapped, latin-1 decoded, built from a list).
struct byte_buffer {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  std::vector<std::uint8_t> owned;

  byte_buffer() = default;
  byte_buffer(const byte_buffer& o) : data(o.data), size(o.size), owned(o.owned) {
    if (!owned.empty()) data = owned.data();  // a copy must not point into the original
  }
  byte_buffer(byte_buffer&& o) noexcept = default;  // moving a vector keeps its heap block
  byte_buffer& operator=(byte_buffer o) noexcept {
    data = o.data;
    size = o.size;
    owned = std::move(o.owned);
    return *this;
  }

  std::span<const std::uint8_t> span() const { return {data, size}; }
  void own(std::vector<std::uint8_t> bytes) {
    owned = std::move(bytes);
    data = owned.data();
    size = owned.size();
  }
};


// A NumPy array after reconstruction: payload in host byte order, `shape` in NumPy's
// order, `fortran_order` telling how the payload is laid out.
struct array {
  io::dtype dtype = io::dtype::U8;
  std::vector<std::int64_t> shape;
  bool fortran_order = false;
  byte_buffer payload;
  bool initialised = false;  // set by BUILD (or _frombuffer); arrays used before that are refused

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
  int rank() const { return static_cast<int>(shape.size()); }

  // Element at flat payload position i, converted to T.
  template <class T>
  T element(std::int64_t i) const {
    return load_element<T>(dtype, payload.data + static_cast<std::size_t>(i) * dtype_size(dtype),
                           std::endian::native);
  }

  // All elements in C (row-major) order, converted to T.
  template <class T>
  std::vector<T> to_vector() const {
    throw_if<format_error>(!initialised, "pickle: array used before its state was set");
    const std::int64_t n = numel();
    std::vector<T> out(static_cast<std::size_t>(n));
    if (!fortran_order || rank() <= 1) {
      convert_elements(dtype, payload.data, out.size(), std::endian::native, out.data());
      return out;
    }
    // Walk the C-order multi-index and track its offset in the Fortran-ordered payload.
    std::vector<std::int64_t> stride(shape.size()), index(shape.size(), 0);
    std::int64_t s = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) stride[d] = s, s *= shape[d];
    std::int64_t offset = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      out[i] = element<T>(offset);
      for (int d = rank() - 1; d >= 0; --d) {
        if (++index[d] < shape[d]) {
          offset += stride[d];
          break;
        }
        offset -= stride[d] * (shape[d] - 1);
        index[d] = 0;
      }
    }
    return out;
  }
};
enum class kind { none, boolean, integer, floating, str, bytes, list, tuple, dict, global, dtype, array };

inline const char* kind_name(kind k) {
  constexpr const char* names[] = {"None", "bool", "int",    "float",  "str",   "bytes",
                                   "list", "tuple", "dict", "global", "dtype", "ndarray"};
  return names[static_cast<int>(k)];
}

class value;
using value_list = std::vector<const value*>;
using value_dict = std::vector<std::pair<const value*, const value*>>;

// The callables the reader knows how to emulate; anything else is refused at GLOBAL time.
enum class callable { reconstruct, ndarray, dtype, scalar, frombuffer, codecs_encode, bytes };
struct global_ref {
  callable what;
  std::string qualified_name;
};

class value {
 public:
  struct none_t {};
  struct str_t { std::string text; };  // UTF-8, as pickled
  struct bytes_t { byte_buffer buffer; };
  struct list_t { value_list items; };
  struct tuple_t { value_list items; };
  struct dict_t {
    value_dict items;
    // Tagged key text ('s' str, 'b' bytes, 'i' int) → position, so that lookups and
    // Python's "a repeated key replaces the value" stay O(1) on 15,000-key data sets.
    // Behind a pointer, created on the first insert: keeps every value small (see arena_).
    std::unique_ptr<std::unordered_map<std::string, std::size_t>> index;
  };
  using storage = std::variant<none_t, bool, std::int64_t, double, str_t, bytes_t, list_t, tuple_t,
                               dict_t, global_ref, numpy_dtype, std::unique_ptr<pickle::array>>;

  explicit value(storage s) : v_(std::move(s)) {}

  kind type() const { return static_cast<kind>(v_.index()); }
  const char* type_name() const { return kind_name(type()); }
  bool is(kind k) const { return type() == k; }
  bool is_none() const { return is(kind::none); }

  bool as_bool() const { return get<bool>("bool"); }
  // Integers (bool included, as in Python).
  std::int64_t as_int() const {
    if (auto* b = std::get_if<bool>(&v_)) return *b;
    return get<std::int64_t>("int");
  }
  // Floats, or integers widened.
  double as_float() const {
    if (auto* i = std::get_if<std::int64_t>(&v_)) return static_cast<double>(*i);
    if (auto* b = std::get_if<bool>(&v_)) return *b;
    return get<double>("float");
  }
  const std::string& as_str() const { return get<str_t>("str").text; }
  std::span<const std::uint8_t> as_bytes() const { return get<bytes_t>("bytes").buffer.span(); }
  // Text of a str, or the bytes of a Python-2 str (BINSTRING) taken as text.
  std::string_view text() const {
    if (auto* s = std::get_if<str_t>(&v_)) return s->text;
    auto b = get<bytes_t>("str or bytes").buffer.span();
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  // Items of a list or a tuple.
  const value_list& items() const {
    if (auto* l = std::get_if<list_t>(&v_)) return l->items;
    return get<tuple_t>("list or tuple").items;
  }
  const value_dict& as_dict() const { return get<dict_t>("dict").items; }
  const pickle::array& as_array() const {
    const auto& a = *get<std::unique_ptr<pickle::array>>("ndarray");
    throw_if<format_error>(!a.initialised, "pickle: ndarray used before its state was set");
    return a;
  }
  const numpy_dtype& as_dtype() const { return get<numpy_dtype>("dtype"); }

  // Dict lookup by a text key (str keys, or bytes keys from Python 2): nullptr if absent.
  const value* find(std::string_view key) const {
    const auto& d = get<dict_t>("dict");
    for (char tag : {'s', 'b'}) {
      std::string tagged(1, tag);
      tagged += key;
      if (!d.index) return nullptr;
      if (auto it = d.index->find(tagged); it != d.index->end()) return d.items[it->second].second;
    }
    return nullptr;
  }
  const value& at(std::string_view key) const {
    const value* v = find(key);
    throw_if<format_error>(!v, "pickle: dict has no key '", key, "'");
    return *v;
  }

 private:
  friend class unpickler;
  friend class numpy_objects;
  template <class T>
  const T& get(const char* expected) const {
    const T* p = std::get_if<T>(&v_);
    throw_if<format_error>(!p, "pickle: expected ", expected, ", found ", type_name());
    return *p;
  }
  // The tagged text of a hashable key (see dict_t::index); empty for other key types.
  std::string key_tag() const {
    // Built by append: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
    std::string tag;
    if (is(kind::str) || is(kind::bytes)) tag.append(1, is(kind::str) ? 's' : 'b').append(text());
    else if (is(kind::integer) || is(kind::boolean)) tag.append(1, 'i').append(std::to_string(as_int()));
    return tag;
  }
  storage v_;
  int depth_ = 0;  // container nesting below this value, for options::max_depth
};

struct options {
  int max_depth = 256;  // deeper nesting is refused (no legitimate data set nests this deep)
};

// Owns the input bytes (a read-only memory map or a vector) and every value.
class document {
 public:
  document() = default;
  document(document&&) noexcept = default;
  document& operator=(document&&) noexcept = default;
  document(const document&) = delete;
  document& operator=(const document&) = delete;

  const value& root() const {
    throw_if<format_error>(!root_, "pickle: empty document");
    return *root_;
  }
  std::span<const std::uint8_t> input() const { return {input_data_, input_size_}; }
  // The file the document was read from; empty for a pickle parsed from memory.
  const std::filesystem::path& source() const { return source_; }

 private:
  friend class unpickler;
  friend class numpy_objects;
  friend document loads(std::vector<std::uint8_t> bytes, options opts);
  friend document load_file(const std::filesystem::path& path, options opts);
  struct mapping {
    void* address = nullptr;
    std::size_t size = 0;
    ~mapping() {
      if (address) ::munmap(address, size);
    }
  };
  std::unique_ptr<mapping> map_;
  std::vector<std::uint8_t> owned_input_;
  const std::uint8_t* input_data_ = nullptr;
  std::size_t input_size_ = 0;
  // A deque: stable addresses without one heap block per value, so a hostile stream of
  // one-byte opcodes costs tens of bytes per opcode, not a malloc each.
  std::deque<value> arena_;
  const value* root_ = nullptr;
  std::filesystem::path source_;

  template <class T>
  value* make(T&& v) {
    return &arena_.emplace_back(value::storage(std::forward<T>(v)));
  }
};

}  // namespace ambiseg::io::pickle
