// ambiseg/io/pickle.hpp — a restricted, non-executing reader for Python pickles.
//
// The LIDC data set of PHiSeg / the Probabilistic-UNet ports (and the QUBIQ pickle of
// Medical Matting) is a pickled dict of NumPy arrays. Python's unpickler can run any
// callable the file names; this one runs none. It interprets the opcodes of protocols
// 2–5 that plain containers and NumPy arrays need, rebuilds arrays from their documented
// reduce protocol, and refuses every other global with a format_error naming it.
//
// Value model: a document owns every value (an arena, so shared references from the memo
// and even reference cycles are harmless) and the input bytes (memory-mapped for files),
// so array and bytes payloads point into the input without a copy.
//
// Hostile input: every length is checked against the remaining bytes before it is used,
// every pop against the stack, every memo index against the memo, every array's byte
// count against shape × itemsize (with overflow checks); nesting deeper than
// options::max_depth is refused. Parsing is iterative, so no input can overflow the
// C++ stack.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
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

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ambiseg/core/error.hpp"

namespace ambiseg::io::pickle {

static_assert(std::endian::native == std::endian::little,
              "ambiseg::io::pickle converts array payloads to little-endian host order");

// NumPy's dtype, reduced to the numeric kinds a segmentation data set holds:
// 'b' bool, 'u' unsigned, 'i' signed, 'f' IEEE float (2, 4 or 8 bytes).
struct dtype {
  char kind = 'u';
  int itemsize = 1;
  char byteorder = '|';  // '<' '>' '|' ('=' is resolved to '<' on this little-endian host)
  std::string str() const { return std::string(1, byteorder) + kind + std::to_string(itemsize); }
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
  ambiseg::io::pickle::dtype dtype;
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

  static float half_to_float(std::uint16_t h) {
    const int sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    float magnitude;
    if (exponent == 0) magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    else if (exponent == 31) magnitude = mantissa ? NAN : INFINITY;
    else magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
    return sign ? -magnitude : magnitude;
  }

  // Element at flat payload position i, converted to T.
  template <class T>
  T element(std::int64_t i) const {
    const std::uint8_t* p = payload.data + static_cast<std::size_t>(i) * dtype.itemsize;
    auto load = [p]<class S>(S) {
      S s;
      std::memcpy(&s, p, sizeof(S));
      return s;
    };
    switch (dtype.kind) {
      case 'b': return static_cast<T>(*p != 0);
      case 'u':
        switch (dtype.itemsize) {
          case 1: return static_cast<T>(*p);
          case 2: return static_cast<T>(load(std::uint16_t{}));
          case 4: return static_cast<T>(load(std::uint32_t{}));
          default: return static_cast<T>(load(std::uint64_t{}));
        }
      case 'i':
        switch (dtype.itemsize) {
          case 1: return static_cast<T>(static_cast<std::int8_t>(*p));
          case 2: return static_cast<T>(load(std::int16_t{}));
          case 4: return static_cast<T>(load(std::int32_t{}));
          default: return static_cast<T>(load(std::int64_t{}));
        }
      default:
        switch (dtype.itemsize) {
          case 2: return static_cast<T>(half_to_float(load(std::uint16_t{})));
          case 4: return static_cast<T>(load(float{}));
          default: return static_cast<T>(load(double{}));
        }
    }
  }

  // All elements in C (row-major) order, converted to T.
  template <class T>
  std::vector<T> to_vector() const {
    throw_if<format_error>(!initialised, "pickle: array used before its state was set");
    const std::int64_t n = numel();
    std::vector<T> out(static_cast<std::size_t>(n));
    if (!fortran_order || rank() <= 1) {
      for (std::int64_t i = 0; i < n; ++i) out[i] = element<T>(i);
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
                               dict_t, global_ref, pickle::dtype, std::unique_ptr<pickle::array>>;

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
  const pickle::dtype& as_dtype() const { return get<pickle::dtype>("dtype"); }

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

 private:
  friend class unpickler;
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
};

class unpickler {
 public:
  unpickler(document& doc, options opts)
      : doc_(doc), opts_(opts), begin_(doc.input_data_), p_(begin_), end_(begin_ + doc.input_size_) {}

  const value* run() {
    throw_if<format_error>(p_ == end_, "pickle: empty input");
    for (;;) {
      throw_if<format_error>(p_ >= end_, "pickle: truncated stream (no STOP opcode) after ",
                             offset(), " bytes");
      const std::size_t at = offset();
      const std::uint8_t op = *p_++;
      switch (op) {
        case 0x80: {  // PROTO
          const unsigned proto = read_u8();
          throw_if<format_error>(proto > 5, "pickle: unsupported protocol ", proto);
          break;
        }
        case 0x95: {  // FRAME: framing is a hint for buffered readers; only its length is checked
          const std::uint64_t n = read_le(8);
          throw_if<format_error>(n > remaining(), "pickle: FRAME of ", n, " bytes at offset ", at,
                                 " exceeds the ", remaining(), " bytes left");
          break;
        }
        case '.': {  // STOP
          return pop("STOP");
        }
        // --- memo ---
        case 0x94: memo_put(memo_.size(), "MEMOIZE"); break;
        case 'p': memo_put(read_decimal_line("PUT"), "PUT"); break;
        case 'q': memo_put(read_u8(), "BINPUT"); break;
        case 'r': memo_put(read_le(4), "LONG_BINPUT"); break;
        case 'g': memo_get(read_decimal_line("GET"), "GET"); break;
        case 'h': memo_get(read_u8(), "BINGET"); break;
        case 'j': memo_get(read_le(4), "LONG_BINGET"); break;
        // --- stack manipulation ---
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '0':  // POP: as in Python, an empty stack above a MARK pops the mark
          if (stack_.size() <= floor() && !marks_.empty()) pop_mark("POP");
          else pop("POP");
          break;
        case '1': pop_mark("POP_MARK"); break;
        case '2': push(top("DUP")); break;
        // --- scalars ---
        case 'N': push(none_ ? none_ : (none_ = make(value::none_t{}))); break;  // immutable:
        case 0x88: push(true_ ? true_ : (true_ = make(true))); break;              // shared, as
        case 0x89: push(false_ ? false_ : (false_ = make(false))); break;          // in Python
        case 'J': push(make(static_cast<std::int64_t>(static_cast<std::int32_t>(read_le(4))))); break;
        case 'K': push(make(static_cast<std::int64_t>(read_u8()))); break;
        case 'M': push(make(static_cast<std::int64_t>(read_le(2)))); break;
        case 0x8a: push(make(read_long(read_u8()))); break;  // LONG1
        case 0x8b: {                                          // LONG4
          const auto n = static_cast<std::int32_t>(read_le(4));
          throw_if<format_error>(n < 0, "pickle: LONG4 with negative length ", n);
          push(make(read_long(static_cast<std::uint64_t>(n))));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian IEEE double
          const std::uint64_t bits = read_be8();
          push(make(std::bit_cast<double>(bits)));
          break;
        }
        // --- strings and bytes ---
        case 0x8c: push_str(read_u8()); break;   // SHORT_BINUNICODE
        case 'X': push_str(read_le(4)); break;   // BINUNICODE
        case 0x8d: push_str(read_le(8)); break;  // BINUNICODE8
        case 'C': push_bytes(read_u8()); break;  // SHORT_BINBYTES
        case 'B': push_bytes(read_le(4)); break;  // BINBYTES
        case 0x8e: push_bytes(read_le(8)); break;  // BINBYTES8
        case 0x96: push_bytes(read_le(8)); break;  // BYTEARRAY8 (in-band PickleBuffer)
        case 'U': push_bytes(read_u8()); break;  // SHORT_BINSTRING: a Python-2 str, kept as bytes
        case 'T': {                              // BINSTRING
          const auto n = static_cast<std::int32_t>(read_le(4));
          throw_if<format_error>(n < 0, "pickle: BINSTRING with negative length ", n);
          push_bytes(static_cast<std::uint64_t>(n));
          break;
        }
        case 0x98: top("READONLY_BUFFER"); break;  // marks the top buffer read-only: a no-op here
        case 0x97:
          throw format_error("pickle: out-of-band buffers (NEXT_BUFFER) are not supported");
        // --- containers ---
        case ')': push(make(value::tuple_t{})); break;
        case 't': push(make_tuple(pop_mark("TUPLE"))); break;
        case 0x85: push(make_tuple(pop_n(1, "TUPLE1"))); break;
        case 0x86: push(make_tuple(pop_n(2, "TUPLE2"))); break;
        case 0x87: push(make_tuple(pop_n(3, "TUPLE3"))); break;
        case ']': push(make(value::list_t{})); break;
        case 'l': {  // LIST
          value* l = make(value::list_t{});
          append_all(l, pop_mark("LIST"), "LIST");
          push(l);
          break;
        }
        case 'a': {  // APPEND
          std::vector<value*> item{pop("APPEND")};
          append_all(top("APPEND"), item, "APPEND");
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark("APPENDS");
          append_all(top("APPENDS"), items, "APPENDS");
          break;
        }
        case '}': push(make(value::dict_t{})); break;
        case 'd': {  // DICT
          value* d = make(value::dict_t{});
          set_items(d, pop_mark("DICT"), "DICT");
          push(d);
          break;
        }
        case 's': {  // SETITEM
          auto kv = pop_n(2, "SETITEM");
          set_items(top("SETITEM"), kv, "SETITEM");
          break;
        }
        case 'u': {  // SETITEMS
          auto kv = pop_mark("SETITEMS");
          set_items(top("SETITEMS"), kv, "SETITEMS");
          break;
        }
        // --- objects (the NumPy reduce protocol, nothing else) ---
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string module(read_line("GLOBAL"));
          const std::string name(read_line("GLOBAL"));
          push(make_global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          value* name = pop("STACK_GLOBAL");
          value* module = pop("STACK_GLOBAL");
          throw_if<format_error>(!module->is(kind::str) || !name->is(kind::str),
                                 "pickle: STACK_GLOBAL needs two str, got ", module->type_name(),
                                 " and ", name->type_name());
          push(make_global(module->as_str(), name->as_str()));
          break;
        }
        case 'R': {  // REDUCE
          value* args = pop("REDUCE");
          value* fn = pop("REDUCE");
          push(reduce(*fn, *args));
          break;
        }
        case 'b': {  // BUILD
          value* state = pop("BUILD");
          build(*top("BUILD"), *state);
          break;
        }
        default:
          throw format_error(ambiseg::detail::concat("pickle: unsupported opcode 0x", hex(op), " ('",
                                            printable(op), "') at offset ", at,
                                            " (only plain containers and NumPy arrays are read)"));
      }
    }
  }

 private:
  // --- input ---
  std::size_t offset() const { return static_cast<std::size_t>(p_ - begin_); }
  std::uint64_t remaining() const { return static_cast<std::uint64_t>(end_ - p_); }
  void need(std::uint64_t n, const char* what) {
    throw_if<format_error>(n > remaining(), "pickle: truncated stream: ", what, " needs ", n,
                           " bytes at offset ", offset(), ", ", remaining(), " left");
  }
  std::uint8_t read_u8() {
    need(1, "an argument");
    return *p_++;
  }
  std::uint64_t read_le(int n) {
    need(static_cast<std::uint64_t>(n), "an argument");
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(p_[i]) << (8 * i);
    p_ += n;
    return v;
  }
  std::uint64_t read_be8() {
    need(8, "BINFLOAT");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p_[i];
    p_ += 8;
    return v;
  }
  std::span<const std::uint8_t> read_span(std::uint64_t n, const char* what) {
    need(n, what);
    std::span<const std::uint8_t> s(p_, static_cast<std::size_t>(n));
    p_ += n;
    return s;
  }
  std::string_view read_line(const char* what) {
    const std::uint8_t* nl = std::find(p_, end_, std::uint8_t{'\n'});
    throw_if<format_error>(nl == end_, "pickle: truncated stream: ", what, " line without newline");
    std::string_view line(reinterpret_cast<const char*>(p_), static_cast<std::size_t>(nl - p_));
    p_ = nl + 1;
    return line;
  }
  std::uint64_t read_decimal_line(const char* what) {
    std::string_view line = read_line(what);
    throw_if<format_error>(line.empty() || line.size() > 18, "pickle: bad ", what, " index '",
                           line.substr(0, 20), "'");
    std::uint64_t v = 0;
    for (char c : line) {
      throw_if<format_error>(c < '0' || c > '9', "pickle: bad ", what, " index '", line, "'");
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
  }
  // Little-endian two's complement, as LONG1/LONG4 store it; only values that fit int64.
  std::int64_t read_long(std::uint64_t n) {
    auto bytes = read_span(n, "LONG");
    if (n == 0) return 0;
    const bool negative = bytes[n - 1] & 0x80;
    const std::size_t kept = std::min<std::uint64_t>(n, 8);
    const std::uint8_t extension = negative ? 0xff : 0x00;
    bool fits = n <= 8 || ((bytes[7] & 0x80) != 0) == negative;
    for (std::size_t i = kept; i < n && fits; ++i) fits = bytes[i] == extension;
    throw_if<format_error>(!fits, "pickle: integer of ", n, " bytes does not fit 64 bits");
    std::uint64_t v = negative ? ~std::uint64_t{0} : 0;
    for (std::size_t i = 0; i < kept; ++i) {
      v &= ~(std::uint64_t{0xff} << (8 * i));
      v |= static_cast<std::uint64_t>(bytes[i]) << (8 * i);
    }
    return static_cast<std::int64_t>(v);
  }
  static std::string hex(std::uint8_t b) {
    const char* digits = "0123456789abcdef";
    return {digits[b >> 4], digits[b & 15]};
  }
  static char printable(std::uint8_t b) { return (b >= 32 && b < 127) ? static_cast<char>(b) : '?'; }

  // --- stack ---
  void push(value* v) { stack_.push_back(v); }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  value* top(const char* op) {
    throw_if<format_error>(stack_.size() <= floor(), "pickle: stack underflow in ", op,
                           " at offset ", offset());
    return stack_.back();
  }
  value* pop(const char* op) {
    value* v = top(op);
    stack_.pop_back();
    return v;
  }
  std::vector<value*> pop_n(std::size_t n, const char* op) {
    throw_if<format_error>(stack_.size() < floor() + n, "pickle: stack underflow in ", op,
                           " at offset ", offset());
    std::vector<value*> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return items;
  }
  std::vector<value*> pop_mark(const char* op) {
    throw_if<format_error>(marks_.empty(), "pickle: ", op, " without MARK at offset ", offset());
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }

  // --- memo ---
  void memo_put(std::uint64_t index, const char* op) { memo_[index] = top(op); }
  void memo_get(std::uint64_t index, const char* op) {
    auto it = memo_.find(index);
    throw_if<format_error>(it == memo_.end(), "pickle: ", op, " of memo index ", index,
                           " which was never stored (memo holds ", memo_.size(), " entries)");
    push(it->second);
  }

  // --- values ---
  template <class T>
  value* make(T&& v) {
    return &doc_.arena_.emplace_back(value::storage(std::forward<T>(v)));
  }
  void deepen(value* container, const value* child) {
    container->depth_ = std::max(container->depth_, child->depth_ + 1);
    throw_if<format_error>(container->depth_ > opts_.max_depth,
                           "pickle: nesting deeper than ", opts_.max_depth, " levels");
  }
  value* make_tuple(const std::vector<value*>& items) {
    value* t = make(value::tuple_t{value_list(items.begin(), items.end())});
    for (const value* i : items) deepen(t, i);
    return t;
  }
  void push_str(std::uint64_t n) {
    auto s = read_span(n, "a str");
    push(make(value::str_t{std::string(reinterpret_cast<const char*>(s.data()), s.size())}));
  }
  void push_bytes(std::uint64_t n) {
    auto s = read_span(n, "a bytes object");
    value::bytes_t b;
    b.buffer.data = s.data();
    b.buffer.size = s.size();
    push(make(std::move(b)));
  }
  void append_all(value* target, const std::vector<value*>& items, const char* op) {
    auto* l = std::get_if<value::list_t>(&target->v_);
    throw_if<format_error>(!l, "pickle: ", op, " on a ", target->type_name(), ", not a list");
    for (value* i : items) {
      l->items.push_back(i);
      deepen(target, i);
    }
  }
  void set_items(value* target, const std::vector<value*>& kv, const char* op) {
    auto* d = std::get_if<value::dict_t>(&target->v_);
    throw_if<format_error>(!d, "pickle: ", op, " on a ", target->type_name(), ", not a dict");
    throw_if<format_error>(kv.size() % 2 != 0, "pickle: ", op, " with an odd number of items (",
                           kv.size(), ")");
    for (std::size_t i = 0; i < kv.size(); i += 2) {
      deepen(target, kv[i]);
      deepen(target, kv[i + 1]);
      std::string tag = kv[i]->key_tag();
      if (!tag.empty()) {
        if (!d->index) d->index = std::make_unique<std::unordered_map<std::string, std::size_t>>();
        auto [it, inserted] = d->index->try_emplace(std::move(tag), d->items.size());
        if (!inserted) {  // Python semantics: a repeated key replaces the earlier value
          d->items[it->second].second = kv[i + 1];
          continue;
        }
      }
      d->items.emplace_back(kv[i], kv[i + 1]);
    }
  }

  value* make_global(const std::string& module, const std::string& name) {
    const std::string q = module + "." + name;
    auto known = [&](std::initializer_list<const char*> names) {
      return std::find_if(names.begin(), names.end(), [&](const char* n) { return q == n; }) !=
             names.end();
    };
    callable c;
    if (known({"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}))
      c = callable::reconstruct;
    else if (known({"numpy.ndarray"})) c = callable::ndarray;
    else if (known({"numpy.dtype"})) c = callable::dtype;
    else if (known({"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"}))
      c = callable::scalar;
    else if (known({"numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"}))
      c = callable::frombuffer;
    else if (known({"_codecs.encode"})) c = callable::codecs_encode;
    else if (known({"__builtin__.bytes", "builtins.bytes"})) c = callable::bytes;
    else
      throw format_error(ambiseg::detail::concat("pickle: refusing global '", printable_name(q),
                                        "' at offset ", offset(),
                                        ": only NumPy arrays and plain containers are read, "
                                        "nothing is executed"));
    return make(global_ref{c, q});
  }
  static std::string printable_name(const std::string& s) {
    std::string out;
    for (char ch : s.substr(0, 200)) out += printable(static_cast<std::uint8_t>(ch));
    return out;
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
        const pickle::dtype& dt = a[0]->as_dtype();
        pickle::array tmp;
        tmp.dtype = dt;
        tmp.shape = {1};
        tmp.initialised = true;
        set_payload(tmp, *a[1], name);
        if (dt.kind == 'f') return make(tmp.element<double>(0));
        if (dt.kind == 'b') return make(tmp.element<bool>(0));
        if (dt.kind == 'u' && dt.itemsize == 8)
          throw_if<format_error>(tmp.element<std::uint64_t>(0) > INT64_MAX,
                                 "pickle: uint64 scalar does not fit int64");
        return make(tmp.element<std::int64_t>(0));
      }
      case callable::frombuffer: {  // _frombuffer(buffer, dtype, shape, order) (protocol 5)
        const auto& a = args_of(args, name, 4, 4);
        pickle::array arr;
        arr.dtype = a[1]->as_dtype();
        arr.shape = read_shape(*a[2], name);
        const std::string_view order = a[3]->text();
        throw_if<format_error>(order != "C" && order != "F", "pickle: ", name, " order '",
                               order.substr(0, 8), "'");
        arr.fortran_order = order == "F";
        set_payload(arr, *a[0], name);
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

  void build(value& target, const value& state) {
    if (auto* dt = std::get_if<pickle::dtype>(&target.v_)) {
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
      dt->byteorder = order[0] == '=' ? '<' : order[0];
      if (dt->itemsize == 1) dt->byteorder = '|';
      throw_if<format_error>(dt->byteorder == '|' && dt->itemsize > 1,
                             "pickle: dtype byte order '|' for ", dt->itemsize, "-byte items");
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
      arr->dtype = s[1]->as_dtype();
      throw_if<format_error>(!s[2]->is(kind::boolean) && !s[2]->is(kind::integer),
                             "pickle: ndarray is_fortran is a ", s[2]->type_name());
      arr->fortran_order = s[2]->as_int() != 0;
      set_payload(*arr, *s[3], "ndarray state");
      arr->initialised = true;
      return;
    }
    throw format_error(ambiseg::detail::concat("pickle: BUILD on a ", target.type_name(),
                                      " (only NumPy arrays and dtypes are built)"));
  }

  static pickle::dtype parse_dtype(std::string_view spec) {
    const std::string shown = printable_name(std::string(spec.substr(0, 16)));
    pickle::dtype dt;
    dt.byteorder = '<';
    if (!spec.empty() && std::string_view("<>|=").find(spec[0]) != std::string_view::npos) {
      dt.byteorder = spec[0] == '=' ? '<' : spec[0];
      spec.remove_prefix(1);
    }
    if (spec == "?" || spec == "bool") spec = "b1";
    throw_if<format_error>(spec.size() < 2 || spec.size() > 3, "pickle: unsupported dtype '",
                           shown, "'");
    dt.kind = spec[0];
    int size = 0;
    for (char c : spec.substr(1)) {
      throw_if<format_error>(c < '0' || c > '9', "pickle: unsupported dtype '", shown, "'");
      size = size * 10 + (c - '0');
    }
    dt.itemsize = size;
    const bool ok = (dt.kind == 'b' && size == 1) ||
                    ((dt.kind == 'u' || dt.kind == 'i') &&
                     (size == 1 || size == 2 || size == 4 || size == 8)) ||
                    (dt.kind == 'f' && (size == 2 || size == 4 || size == 8));
    throw_if<format_error>(!ok, "pickle: unsupported dtype '", shown,
                           "' (numeric bool/int/uint/float only)");
    if (size == 1) dt.byteorder = '|';
    return dt;
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

  // Fills arr.payload from raw bytes (checked against shape × itemsize) or from a list of
  // numbers, in host byte order.
  static void set_payload(pickle::array& arr, const value& data, const char* where) {
    const std::int64_t n = arr.numel();
    const auto itemsize = static_cast<std::size_t>(arr.dtype.itemsize);
    if (data.is(kind::bytes)) {
      const auto& buf = std::get<value::bytes_t>(data.v_).buffer;
      throw_if<format_error>(buf.size / itemsize != static_cast<std::uint64_t>(n) ||
                                 buf.size % itemsize != 0,
                             "pickle: ", where, ": ", buf.size, " bytes for ", n, " items of ",
                             arr.dtype.str());
      if (arr.dtype.byteorder == '>' && itemsize > 1) {
        std::vector<std::uint8_t> swapped(buf.data, buf.data + buf.size);
        for (std::size_t i = 0; i < swapped.size(); i += itemsize)
          std::reverse(swapped.begin() + static_cast<std::ptrdiff_t>(i),
                       swapped.begin() + static_cast<std::ptrdiff_t>(i + itemsize));
        arr.payload.own(std::move(swapped));
      } else {
        arr.payload.data = buf.data;
        arr.payload.size = buf.size;
      }
      arr.dtype.byteorder = itemsize == 1 ? '|' : '<';
      return;
    }
    if (data.is(kind::list)) {
      const auto& items = data.items();
      throw_if<format_error>(static_cast<std::int64_t>(items.size()) != n, "pickle: ", where,
                             ": ", items.size(), " list items for ", n, " elements");
      std::vector<std::uint8_t> out(items.size() * itemsize);
      for (std::size_t i = 0; i < items.size(); ++i)
        store_element(arr.dtype, *items[i], out.data() + i * itemsize);
      arr.payload.own(std::move(out));
      arr.dtype.byteorder = itemsize == 1 ? '|' : '<';
      return;
    }
    throw format_error(ambiseg::detail::concat("pickle: ", where, ": array data is a ", data.type_name()));
  }
  static void store_element(const pickle::dtype& dt, const value& v, std::uint8_t* out) {
    auto put = [out](auto x) { std::memcpy(out, &x, sizeof(x)); };
    if (dt.kind == 'f') {
      const double d = v.as_float();
      if (dt.itemsize == 8) put(d);
      else if (dt.itemsize == 4) put(static_cast<float>(d));
      else throw format_error("pickle: float16 arrays from lists are not supported");
      return;
    }
    const std::int64_t i = v.as_int();
    switch (dt.itemsize) {
      case 1: put(static_cast<std::uint8_t>(dt.kind == 'b' ? (i != 0) : i)); break;
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

  document& doc_;
  options opts_;
  const std::uint8_t* begin_;
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::vector<value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, value*> memo_;
  value* none_ = nullptr;
  value* true_ = nullptr;
  value* false_ = nullptr;
};

// Parses a pickle held in memory (the document keeps the bytes).
inline document loads(std::vector<std::uint8_t> bytes, options opts = {}) {
  document doc;
  doc.owned_input_ = std::move(bytes);
  doc.input_data_ = doc.owned_input_.data();
  doc.input_size_ = doc.owned_input_.size();
  doc.root_ = unpickler(doc, opts).run();
  return doc;
}
inline document loads(std::span<const std::uint8_t> bytes, options opts = {}) {
  return loads(std::vector<std::uint8_t>(bytes.begin(), bytes.end()), opts);
}

// Parses a pickle file; the file is memory-mapped read-only, so a multi-gigabyte data set
// costs address space, not a second copy.
inline document load_file(const std::filesystem::path& path, options opts = {}) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  throw_if<io_error>(fd < 0, "pickle: cannot open '", path.string(), "'");
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  document doc;
  if (stat_ok && S_ISREG(st.st_mode) && st.st_size > 0) {
    void* address = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE,
                           fd, 0);
    ::close(fd);
    throw_if<io_error>(address == MAP_FAILED, "pickle: cannot map '", path.string(), "'");
    doc.map_ = std::make_unique<document::mapping>();
    doc.map_->address = address;
    doc.map_->size = static_cast<std::size_t>(st.st_size);
    doc.input_data_ = static_cast<const std::uint8_t*>(address);
    doc.input_size_ = doc.map_->size;
  } else {
    ::close(fd);
    throw_if<io_error>(!stat_ok || !S_ISREG(st.st_mode), "pickle: '", path.string(),
                       "' is not a regular file");
    throw format_error("pickle: '" + path.string() + "' is empty");
  }
  try {
    doc.root_ = unpickler(doc, opts).run();
  } catch (const format_error& e) {
    throw format_error(std::string(e.what()) + " (in '" + path.string() + "')");
  }
  return doc;
}

}  // namespace ambiseg::io::pickle
