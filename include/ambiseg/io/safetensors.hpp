// ambiseg/io/safetensors.hpp — read and write the safetensors format.
//
// Layout (https://github.com/huggingface/safetensors):
//   [u64 little-endian N][N bytes of JSON header][data section]
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (byte offsets into the data section) plus an optional "__metadata__" string→string map.
// Data is raw, little-endian, row-major.
//
// The reader trusts nothing in the file: every offset, extent and size is checked at
// open() before any data is touched, and every violation throws ambiseg::format_error
// naming the file (and the tensor). Like the reference Rust implementation, the data
// section must be covered exactly — tensors sorted by offset must tile [0, data size)
// with no hole, no overlap and no trailing bytes — because a hole or an overlap is how a
// damaged or crafted file shows itself. Unknown keys inside a tensor entry are ignored.
//
// Reading converts F32, F64, F16 and BF16 to float or double (F16/BF16 exactly, F64 to
// float rounds to nearest). Other dtypes (integers, bool, fp8) are listed with their
// names but refuse conversion. Writing produces F32 or F64, through atomic_file_writer.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/io/dtype.hpp"

namespace ambiseg::io {

struct tensor_info {
  std::string name;
  io::dtype dtype = io::dtype::F32;
  std::vector<std::int64_t> shape;
  std::int64_t numel = 0;
  std::uint64_t begin = 0, end = 0;  // byte range inside the data section

  std::uint64_t bytes() const { return end - begin; }
  std::string shape_string() const {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
  // As an ambiseg::shape (rank ≤ 4); shape_error beyond.
  ambiseg::shape to_shape() const {
    throw_if<shape_error>(shape.size() > static_cast<std::size_t>(ambiseg::shape::max_rank),
                          "safetensors: tensor '", name, "' has rank ", shape.size(),
                          ", more than the ", ambiseg::shape::max_rank, " an ambiseg tensor holds");
    return ambiseg::shape::from_range(shape.begin(), shape.end());
  }
};

namespace detail {

// Owns a file descriptor; pread() on it is thread-safe, so one open file serves many readers.
struct fd_owner {
  int fd = -1;
  explicit fd_owner(int f) : fd(f) {}
  fd_owner(const fd_owner&) = delete;
  fd_owner& operator=(const fd_owner&) = delete;
  ~fd_owner() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace detail

class safetensors_file {
 public:
  // Headers beyond this are refused before allocating for them.
  static constexpr std::uint64_t max_header_bytes = 100u * 1000u * 1000u;

  static safetensors_file open(const std::filesystem::path& path) {
    safetensors_file f;
    f.path_ = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    throw_if<io_error>(fd < 0, "safetensors: cannot open '", path.string(), "' for reading");
    f.fd_ = std::make_shared<detail::fd_owner>(fd);
    struct stat st{};
    throw_if<io_error>(::fstat(fd, &st) != 0, "safetensors: cannot stat '", path.string(), "'");
    f.check(S_ISREG(st.st_mode), "not a regular file");
    const auto file_size = static_cast<std::uint64_t>(st.st_size);

    f.check(file_size >= 8, "truncated: ", file_size, " bytes, fewer than the 8-byte header length");
    unsigned char length_bytes[8];
    f.read_exact(0, length_bytes, 8);
    const std::uint64_t header_bytes = load_scalar<std::uint64_t>(length_bytes, std::endian::little);
    f.check(header_bytes <= max_header_bytes, "header length ", header_bytes,
            " exceeds the limit of ", max_header_bytes, " bytes");
    f.check(header_bytes <= file_size - 8, "header length ", header_bytes,
            " runs past the end of the file (", file_size, " bytes)");
    f.check(header_bytes >= 2, "header length ", header_bytes, " is too short for a JSON object");
    std::string header(header_bytes, '\0');
    f.read_exact(8, header.data(), header_bytes);
    f.data_start_ = 8 + header_bytes;
    f.parse_header(header, file_size - f.data_start_);
    return f;
  }

  const std::filesystem::path& path() const { return path_; }
  // Tensor names in storage order (by data offset).
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    n.reserve(tensors_.size());
    for (const auto& t : tensors_) n.push_back(t.name);
    return n;
  }
  std::size_t size() const { return tensors_.size(); }
  const std::vector<tensor_info>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const tensor_info& info(const std::string& name) const {
    auto it = index_.find(name);
    throw_if<format_error>(it == index_.end(), "safetensors: '", path_.string(),
                           "' has no tensor named '", name, "'");
    return tensors_[it->second];
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads tensor `name` into dst, converting to T. dst must have the tensor's shape.
  template <class T>
  void read_into(const std::string& name, tensor_view<T, cpu> dst) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "safetensors: read into float or double");
    const tensor_info& t = info(name);
    throw_if<shape_error>(!(t.to_shape() == dst.shape()), "safetensors: '", path_.string(),
                          "': tensor '", name, "' has shape ", t.shape_string(),
                          ", the destination ", dst.shape().to_string());
    read_converted(t, dst.data());
  }
  // Reads tensor `name` as a flat vector (any rank).
  template <class T>
  std::vector<T> read(const std::string& name) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "safetensors: read into float or double");
    const tensor_info& t = info(name);
    std::vector<T> out(static_cast<std::size_t>(t.numel));
    read_converted(t, out.data());
    return out;
  }
  template <class T>
  ambiseg::tensor<T, cpu> read_tensor(const std::string& name) const {
    ambiseg::tensor<T, cpu> out(info(name).to_shape());
    read_into<T>(name, out.view());
    return out;
  }

 private:
  safetensors_file() = default;

  template <class... Args>
  void check(bool ok, Args&&... what) const {
    throw_if<format_error>(!ok, "safetensors: '", path_.string(), "': ", std::forward<Args>(what)...);
  }

  void read_exact(std::uint64_t offset, void* dst, std::uint64_t bytes) const {
    auto* p = static_cast<unsigned char*>(dst);
    while (bytes > 0) {
      const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, 1u << 30));
      const ssize_t got = ::pread(fd_->fd, p, chunk, static_cast<off_t>(offset));
      // A short read here means the file shrank after open() validated its size.
      check(got > 0, "truncated: could not read ", bytes, " bytes at offset ", offset);
      p += got;
      offset += static_cast<std::uint64_t>(got);
      bytes -= static_cast<std::uint64_t>(got);
    }
  }

  void parse_header(const std::string& header, std::uint64_t data_bytes) {
    check(header.front() == '{', "header does not start with '{'");
    // nlohmann keeps the last of duplicate keys silently; a callback sees every key.
    std::vector<std::vector<std::string>> open_objects;
    std::string duplicate;
    auto watch_keys = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using ev = nlohmann::json::parse_event_t;
      if (event == ev::object_start) open_objects.emplace_back();
      else if (event == ev::object_end && !open_objects.empty()) open_objects.pop_back();
      else if (event == ev::key && !open_objects.empty() && duplicate.empty()) {
        auto& keys = open_objects.back();
        const std::string& k = parsed.get_ref<const std::string&>();
        if (std::find(keys.begin(), keys.end(), k) != keys.end()) duplicate = k;
        else if (open_objects.size() <= 2) keys.push_back(k);  // only the levels we read
      }
      return true;
    };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(header, watch_keys);
    } catch (const nlohmann::json::exception& e) {
      check(false, "header is not valid JSON: ", e.what());
    }
    check(duplicate.empty(), "duplicate key '", duplicate, "' in the header");
    check(j.is_object(), "header is not a JSON object");

    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "__metadata__") {
        check(it->is_object(), "__metadata__ is not an object");
        for (auto m = it->begin(); m != it->end(); ++m) {
          check(m->is_string(), "__metadata__ value for '", m.key(), "' is not a string");
          metadata_.emplace(m.key(), m->get<std::string>());
        }
        continue;
      }
      tensors_.push_back(parse_entry(it.key(), *it, data_bytes));
    }

    // The tensors, sorted by offset, must tile the data section exactly.
    std::stable_sort(tensors_.begin(), tensors_.end(),
                     [](const tensor_info& a, const tensor_info& b) {
                       return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                     });
    std::uint64_t covered = 0;
    const tensor_info* previous = nullptr;
    for (const auto& t : tensors_) {
      check(t.begin >= covered, "tensor '", t.name, "' (bytes [", t.begin, ", ", t.end,
            ")) overlaps tensor '", previous ? previous->name : "", "' (ending at ", covered, ")");
      check(t.begin == covered, "hole in the data section: bytes [", covered, ", ", t.begin,
            ") before tensor '", t.name, "' belong to no tensor");
      covered = t.end;
      previous = &t;
    }
    check(covered == data_bytes, "data section has ", data_bytes, " bytes but the tensors cover ",
          covered, " (", data_bytes - covered, " trailing bytes belong to no tensor)");
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  tensor_info parse_entry(const std::string& name, const nlohmann::json& e, std::uint64_t data_bytes) const {
    tensor_info t;
    t.name = name;
    check(e.is_object(), "tensor '", name, "': entry is not an object");
    const auto dt = e.find("dtype");
    check(dt != e.end() && dt->is_string(), "tensor '", name, "': missing or non-string \"dtype\"");
    check(parse_dtype(dt->get_ref<const std::string&>(), t.dtype), "tensor '", name,
          "': unknown dtype '", dt->get_ref<const std::string&>(), "'");

    const auto sh = e.find("shape");
    check(sh != e.end() && sh->is_array(), "tensor '", name, "': missing or non-array \"shape\"");
    std::uint64_t numel = 1;
    for (const auto& extent : *sh) {
      check(extent.is_number_integer(), "tensor '", name, "': shape entry ", extent.dump(),
            " is not an integer");
      check(extent.is_number_unsigned(), "tensor '", name, "': negative extent ", extent.dump());
      const auto x = extent.get<std::uint64_t>();
      check(x <= static_cast<std::uint64_t>(INT64_MAX) &&
                !__builtin_mul_overflow(numel, x, &numel) && numel <= static_cast<std::uint64_t>(INT64_MAX),
            "tensor '", name, "': shape ", sh->dump(), " overflows 64 bits");
      t.shape.push_back(static_cast<std::int64_t>(x));
    }
    t.numel = static_cast<std::int64_t>(numel);

    const auto off = e.find("data_offsets");
    check(off != e.end() && off->is_array() && off->size() == 2, "tensor '", name,
          "': \"data_offsets\" must be an array of two integers");
    for (const auto& o : *off)
      check(o.is_number_unsigned(), "tensor '", name, "': data offset ", o.dump(),
            " is not a non-negative integer");
    t.begin = (*off)[0].get<std::uint64_t>();
    t.end = (*off)[1].get<std::uint64_t>();
    check(t.begin <= t.end, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end, "] are reversed");
    check(t.end <= data_bytes, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end,
          "] run past the data section (", data_bytes, " bytes)");
    std::uint64_t expected = 0;
    check(!__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(t.dtype)), &expected),
          "tensor '", name, "': byte size overflows 64 bits");
    check(t.end - t.begin == expected, "tensor '", name, "': data_offsets span ", t.end - t.begin,
          " bytes but ", dtype_name(t.dtype), " ", t.shape_string(), " needs ", expected);
    return t;
  }

  template <class T>
  void read_converted(const tensor_info& t, T* dst) const {
    const std::uint64_t offset = data_start_ + t.begin;
    const std::size_t n = static_cast<std::size_t>(t.numel);
    if (t.dtype == dtype_of<T>()) {  // same type: straight into the destination
      read_exact(offset, dst, t.bytes());
      convert_byte_order(dst, n, sizeof(T), std::endian::little);
      return;
    }
    check(has_float_conversion(t.dtype), "tensor '", t.name, "': cannot convert dtype ",
          dtype_name(t.dtype), " to ", dtype_name(dtype_of<T>()),
          " (only F16, BF16, F32 and F64 convert)");
    const std::size_t width = dtype_size(t.dtype);
    constexpr std::size_t chunk_elems = 1 << 16;
    std::vector<unsigned char> buffer(std::min(n, chunk_elems) * width);
    for (std::size_t first = 0; first < n; first += chunk_elems) {
      const std::size_t count = std::min(chunk_elems, n - first);
      read_exact(offset + first * width, buffer.data(), count * width);
      convert_elements(t.dtype, buffer.data(), count, std::endian::little, dst + first);
    }
  }

  std::filesystem::path path_;
  std::shared_ptr<detail::fd_owner> fd_;
  std::uint64_t data_start_ = 0;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: host data, F32 or F64, any rank.
struct tensor_to_save {
  std::string name;
  io::dtype dtype = io::dtype::F32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;

  template <class T>
  static tensor_to_save from(std::string name, tensor_view<const T, cpu> v) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "safetensors: only float and double tensors are written");
    return {std::move(name), dtype_of<T>(), std::vector<std::int64_t>(v.shape().begin(), v.shape().end()),
            v.data()};
  }
  // A reshaped save (e.g. a flat buffer slice written with the reference's extents).
  template <class T>
  static tensor_to_save from(std::string name, const T* data, std::vector<std::int64_t> shape) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "safetensors: only float and double tensors are written");
    return {std::move(name), dtype_of<T>(), std::move(shape), data};
  }
};

// Writes `entries` (in the given order) and `metadata` to `path` atomically: on any
// error the previous file at `path`, if any, is left untouched and no temporary remains.
inline void save_safetensors(const std::filesystem::path& path, const std::vector<tensor_to_save>& entries,
                             const std::map<std::string, std::string>& metadata = {}) {
  // Everything is validated before the file is opened.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::vector<std::uint64_t> sizes;
  std::uint64_t offset = 0;
  for (const auto& e : entries) {
    const std::string where = "save_safetensors('" + path.string() + "'): tensor '" + e.name + "'";
    throw_if<value_error>(e.name.empty() || e.name == "__metadata__", where, ": invalid name");
    throw_if<value_error>(header.contains(e.name), where, ": duplicate name");
    throw_if<value_error>(e.dtype != dtype::F32 && e.dtype != dtype::F64, where,
                          ": only F32 and F64 are written, not ", dtype_name(e.dtype));
    std::uint64_t numel = 1;
    for (std::int64_t x : e.shape) {
      throw_if<value_error>(x < 0, where, ": negative extent ", x);
      throw_if<value_error>(__builtin_mul_overflow(numel, static_cast<std::uint64_t>(x), &numel), where,
                            ": shape overflows");
    }
    const std::uint64_t bytes = numel * dtype_size(e.dtype);
    throw_if<value_error>(bytes > 0 && e.data == nullptr, where, ": null data");
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    sizes.push_back(bytes);
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (what the Rust writer does).
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char length[8];
  const std::uint64_t n = text.size();
  std::memcpy(length, &n, 8);
  convert_byte_order(length, 1, 8, std::endian::little);

  atomic_file_writer out(path);
  out.write(length, 8);
  out.write(text);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if constexpr (std::endian::native == std::endian::little) {
      out.write(entries[i].data, sizes[i]);
    } else {
      const std::size_t width = dtype_size(entries[i].dtype);
      std::vector<unsigned char> swapped(static_cast<const unsigned char*>(entries[i].data),
                                         static_cast<const unsigned char*>(entries[i].data) + sizes[i]);
      convert_byte_order(swapped.data(), sizes[i] / width, width, std::endian::little);
      out.write(swapped.data(), sizes[i]);
    }
  }
  out.commit();
}

}  // namespace ambiseg::io
