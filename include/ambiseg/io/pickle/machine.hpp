// ambiseg/io/pickle/machine.hpp — the opcode machine of the restricted pickle reader.
//
// Interprets the opcodes of protocols 2–5 that plain containers and NumPy arrays need;
// GLOBAL admits only the callables of pickle/numpy.hpp and refuses every other one with a
// format_error naming it, so nothing the file names is ever run.
//
// Hostile input: every length is checked against the remaining bytes before it is used,
// every pop against the stack, every memo index against the memo; nesting deeper than
// options::max_depth is refused. Parsing is iterative, so no input can overflow the C++
// stack.
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ambiseg/core/error.hpp"
#include "ambiseg/io/pickle/numpy.hpp"
#include "ambiseg/io/pickle/value.hpp"

namespace ambiseg::io::pickle {

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
          push(numpy_.reduce(*fn, *args));
          break;
        }
        case 'b': {  // BUILD
          value* state = pop("BUILD");
          numpy_.build(*top("BUILD"), *state);
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
    return doc_.make(std::forward<T>(v));
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
    std::string q = module + "." + name;
    const std::optional<callable> c = known_callable(q);
    throw_if<format_error>(!c, "pickle: refusing global '", printable_name(q), "' at offset ",
                           offset(), ": only NumPy arrays and plain containers are read, "
                           "nothing is executed");
    return make(global_ref{*c, std::move(q)});
  }

  document& doc_;
  options opts_;
  numpy_objects numpy_{doc_};
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
  throw_if<io_error>(fd < 0, "pickle: cannot open '", path.string(), "': ", std::strerror(errno));
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  document doc;
  doc.source_ = path;
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
