// ambiseg/io/checkpoint.hpp — parameters and training state in safetensors files.
//
// Weights: one tensor per parameter, named by the parameter_store name (the reference
// state_dict key), with the parameter's shape, F32 for float stores and F64 for double.
//
// Loading by name:
//   strict      every parameter present with its shape, and no tensor in the file that no
//               parameter claims; otherwise format_error naming the first mismatch (in
//               model order) and nothing is modified.
//   non_strict  loads every parameter whose name and shape match; the returned load_report
//               lists what was loaded, missing, unexpected or mismatched.
// F16/BF16/F32/F64 tensors all load (converted); other dtypes count as mismatched.
//
// Non-finite values (NaN, ±inf) are refused when read: a format_error names the file, the
// tensor and the element. Several buffers laid out like the parameters (a training
// checkpoint's optimiser moments, EMA weights) save as flat sections under prefixes; the
// training checkpoint itself is train/checkpoint.hpp's.
//
// Devices: every function takes stores and flat buffers on any device D. On the CPU
// they read and write the flat buffers in place; on another device (ambiseg::cuda) each
// flat buffer is staged through one host copy (download before saving, or before a
// non-strict load so that what is not loaded stays as it was; upload after loading). The
// flat layout depends only on the names, shapes and sizeof(T), so the files are the same
// bytes whatever device wrote them, and any device loads them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/io/safetensors.hpp"
#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/core/cuda_memory.hpp"
#endif

namespace ambiseg::io {

enum class load_mode { strict, non_strict };

struct load_options {
  load_mode mode = load_mode::strict;
  // The file name of parameter `p` is prefix + p (e.g. "ema." loads the EMA weights).
  std::string prefix;
  // File tensors under these prefixes belong to other sections of a training checkpoint
  // and are never "unexpected" — unless `prefix` itself lies under one of them.
  std::vector<std::string> ignore_prefixes = {"optim.", "ema."};
};

struct load_report {
  std::vector<std::string> loaded;      // parameter names
  std::vector<std::string> missing;     // parameters the file lacks
  std::vector<std::string> unexpected;  // file tensor names no parameter claims
  std::vector<std::string> mismatched;  // "name: file F32 [3, 4], model [4, 3]"

  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const {
    return ambiseg::detail::concat(loaded.size(), " loaded, ", missing.size(), " missing, ", unexpected.size(),
                                   " unexpected, ", mismatched.size(), " mismatched");
  }
};

namespace detail {

inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

inline bool is_float_dtype(dtype t) {
  return t == dtype::F16 || t == dtype::BF16 || t == dtype::F32 || t == dtype::F64;
}

inline bool same_extents(const std::vector<std::int64_t>& a, const ambiseg::shape& b) {
  if (a.size() != static_cast<std::size_t>(b.rank())) return false;
  for (int i = 0; i < b.rank(); ++i)
    if (a[static_cast<std::size_t>(i)] != b[i]) return false;
  return true;
}

// What a load would do; computed without touching the destination.
struct load_plan {
  load_report report;
  std::vector<std::size_t> to_load;  // entry indices
  std::string first_problem;
};

template <class T, class D>
load_plan plan_load(const parameter_store<T, D>& store, const safetensors_file& file, const load_options& opt) {
  load_plan plan;
  auto note = [&](const std::string& problem) {
    if (plan.first_problem.empty()) plan.first_problem = problem;
  };
  for (std::size_t i = 0; i < store.size(); ++i) {
    const auto& e = store.info(i);
    const std::string file_name = opt.prefix + e.name;
    if (!file.contains(file_name)) {
      plan.report.missing.push_back(e.name);
      note("parameter '" + e.name + "' (" + e.shape.to_string() + ") is missing from the file" +
           (opt.prefix.empty() ? "" : " (looked for '" + file_name + "')"));
      continue;
    }
    const tensor_info& t = file.info(file_name);
    if (!is_float_dtype(t.dtype) || !same_extents(t.shape, e.shape)) {
      const std::string what = e.name + ": file " + std::string(dtype_name(t.dtype)) + " " +
                               t.shape_string() + ", model " + e.shape.to_string();
      plan.report.mismatched.push_back(what);
      note("parameter " + what);
      continue;
    }
    plan.to_load.push_back(i);
    plan.report.loaded.push_back(e.name);
  }
  for (const auto& t : file.tensors()) {
    if (!starts_with(t.name, opt.prefix)) continue;
    bool ignored = false;
    for (const auto& p : opt.ignore_prefixes)
      ignored = ignored || (starts_with(t.name, p) && !starts_with(opt.prefix, p));
    if (ignored || store.contains(t.name.substr(opt.prefix.size()))) continue;
    plan.report.unexpected.push_back(t.name);
    note("tensor '" + t.name + "' in the file matches no parameter");
  }
  return plan;
}

template <class T>
void throw_if_incomplete(const load_plan& plan, const safetensors_file& file, std::string_view what) {
  throw_if<format_error>(!plan.report.complete(), what, "('", file.path().string(), "'): ", plan.first_problem,
                         " [", plan.report.summary(), "]");
}

// Reads the planned tensors into a buffer laid out like the store's flat buffers.
template <class T, class D>
void execute_load(const load_plan& plan, const parameter_store<T, D>& store, const safetensors_file& file,
                  const std::string& prefix, T* flat_base) {
  for (std::size_t i : plan.to_load) {
    const auto& e = store.info(i);
    file.read_into<T>(prefix + e.name, tensor_view<T, cpu>(flat_base + e.offset, e.shape));
    const T* v = flat_base + e.offset;
    for (std::int64_t k = 0; k < e.shape.numel(); ++k)
      throw_if<format_error>(!std::isfinite(v[k]), "'", file.path().string(), "': tensor '", prefix + e.name,
                             "' holds ", v[k], " at element ", k, " (weights must be finite)");
  }
}

// One tensor per parameter, read from a buffer laid out like the store's flat buffers.
template <class T, class D>
void append_entries(std::vector<tensor_to_save>& out, const parameter_store<T, D>& store, const T* flat_base,
                    const std::string& prefix) {
  for (const auto& e : store.entries())
    out.push_back(tensor_to_save::from<T>(prefix + e.name, flat_base + e.offset,
                                          std::vector<std::int64_t>(e.shape.begin(), e.shape.end())));
}

// The host bytes of a flat device buffer: the buffer itself on the CPU, else one
// download (ordered after the work queued on the device, see docs/cuda.md).
template <class T, class D>
class host_flat_source {
 public:
  explicit host_flat_source(tensor_view<const T, D> flat) {
    if constexpr (std::same_as<D, cpu>) {
      data_ = flat.data();
    } else {
      staging_ = tensor<T>(flat.shape());
      device_memory<D>::copy_to_host(staging_.data(), flat.data(),
                                     sizeof(T) * static_cast<std::size_t>(flat.numel()));
      data_ = staging_.data();
    }
  }
  const T* data() const { return data_; }

 private:
  tensor<T> staging_;
  const T* data_ = nullptr;
};

// Host memory to load a flat device buffer through: the buffer itself on the CPU, else a
// host copy that starts as the buffer's contents (keep) or as zeros, uploaded by commit().
template <class T, class D>
class host_flat_target {
 public:
  enum class start { keep, zeros };
  host_flat_target(tensor_view<T, D> flat, start from) : flat_(flat) {
    if constexpr (std::same_as<D, cpu>) {
      data_ = flat.data();
    } else {
      staging_ = tensor<T>::zeros(flat.shape());
      if (from == start::keep)
        device_memory<D>::copy_to_host(staging_.data(), flat.data(),
                                       sizeof(T) * static_cast<std::size_t>(flat.numel()));
      data_ = staging_.data();
    }
  }
  T* data() const { return data_; }
  void commit() {
    if constexpr (!std::same_as<D, cpu>)
      device_memory<D>::copy_from_host(flat_.data(), staging_.data(),
                                       sizeof(T) * static_cast<std::size_t>(flat_.numel()));
  }

 private:
  tensor_view<T, D> flat_;
  tensor<T> staging_;
  T* data_ = nullptr;
};

}  // namespace detail

template <class T, class D>
load_report load_parameters(parameter_store<T, D>& store, const safetensors_file& file,
                            const load_options& opt = {}) {
  const auto plan = detail::plan_load(store, file, opt);
  if (opt.mode == load_mode::strict) detail::throw_if_incomplete<T>(plan, file, "load_parameters");
  // Off the CPU, the parameters the plan skips keep their values through the staging copy;
  // a complete plan overwrites every entry (and the padding is zero on both sides).
  using target = detail::host_flat_target<T, D>;
  target values(store.flat_values(), plan.report.complete() ? target::start::zeros : target::start::keep);
  detail::execute_load(plan, store, file, opt.prefix, values.data());
  values.commit();
  return plan.report;
}

template <class T, class D>
load_report load_parameters(parameter_store<T, D>& store, const std::filesystem::path& path,
                            const load_options& opt = {}) {
  return load_parameters(store, safetensors_file::open(path), opt);
}

template <class T, class D>
void save_parameters(const parameter_store<T, D>& store, const std::filesystem::path& path,
                     const std::map<std::string, std::string>& metadata = {}) {
  const detail::host_flat_source<T, D> values(store.flat_values());
  std::vector<tensor_to_save> entries;
  detail::append_entries(entries, store, values.data(), "");
  save_safetensors(path, entries, metadata);
}

// ---- flat sections: several buffers laid out like the parameters, in one file ----------

// A flat buffer saved as one tensor per entry of its layout (the store given to
// save_flat_sections unless `layout` is set), named prefix + entry name.
template <class T, class D>
struct flat_section {
  std::string prefix;
  tensor_view<const T, D> flat;
  const parameter_store<T, D>* layout = nullptr;
};

template <class T, class D>
void save_flat_sections(const std::filesystem::path& path, const parameter_store<T, D>& store,
                        const std::vector<flat_section<T, D>>& sections,
                        const std::map<std::string, std::string>& metadata) {
  std::vector<detail::host_flat_source<T, D>> hosts;
  hosts.reserve(sections.size());
  for (const auto& s : sections) {
    const auto& layout = s.layout ? *s.layout : store;
    throw_if<shape_error>(s.flat.numel() != layout.flat_values().numel(), "save_flat_sections: section '",
                          s.prefix, "' holds ", s.flat.numel(), " elements, its layout ",
                          layout.flat_values().numel());
    hosts.emplace_back(s.flat);
  }
  std::vector<tensor_to_save> entries;
  for (std::size_t i = 0; i < sections.size(); ++i)
    detail::append_entries(entries, sections[i].layout ? *sections[i].layout : store, hosts[i].data(),
                           sections[i].prefix);
  save_safetensors(path, entries, metadata);
}

// Metadata access that reports a malformed file as format_error naming the file.
struct metadata_reader {
  const safetensors_file& file;
  std::string op;

  template <class... Args>
  void check(bool ok, Args&&... what) const {
    throw_if<format_error>(!ok, op, "('", file.path().string(), "'): ", std::forward<Args>(what)...);
  }
  const std::string& text(const std::string& key) const {
    auto it = file.metadata().find(key);
    check(it != file.metadata().end(), "metadata key '", key, "' is missing");
    return it->second;
  }
  nlohmann::json json(const std::string& key) const {
    try {
      return nlohmann::json::parse(text(key));
    } catch (const nlohmann::json::exception& e) {
      check(false, "metadata '", key, "' is not valid JSON: ", e.what());
    }
    return {};
  }
  template <class V>
  V field(const nlohmann::json& j, const std::string& key, const char* name) const {
    check(j.is_object() && j.contains(name), "metadata '", key, "' lacks \"", name, "\"");
    const auto& v = j.at(name);
    bool ok = false;
    if constexpr (std::is_same_v<V, bool>) ok = v.is_boolean();
    else if constexpr (std::is_same_v<V, std::uint64_t>) ok = v.is_number_unsigned();
    else if constexpr (std::is_integral_v<V>) ok = v.is_number_integer();
    else if constexpr (std::is_floating_point_v<V>) ok = v.is_number();
    else ok = v.is_string();
    check(ok, "metadata '", key, "': \"", name, "\" has the wrong type (", v.dump(), ")");
    return v.get<V>();
  }
};

namespace detail {
// Loads a complete plan into a flat buffer (any device), starting from zeros so that the
// padding between parameters stays zero.
template <class T, class D>
void load_flat(const load_plan& plan, const parameter_store<T, D>& store, const safetensors_file& file,
               const std::string& prefix, tensor_view<T, D> flat) {
  if constexpr (std::same_as<D, cpu>) std::fill(flat.data(), flat.data() + flat.numel(), T(0));
  host_flat_target<T, D> dst(flat, host_flat_target<T, D>::start::zeros);
  execute_load(plan, store, file, prefix, dst.data());
  dst.commit();
}
}  // namespace detail

}  // namespace ambiseg::io
