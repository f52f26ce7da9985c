// ambiseg/data/pickle_dataset.hpp — the LIDC pickle of PHiSeg / the Probabilistic-UNet
// ports (SPEC §9), and the paper's patient split.
//
// Schema: a dict key → {"image": H×W array, "masks": list of H×W arrays (or one m×H×W
// array), "series_uid": str, optional extras such as QUBIQ's "alpha", ignored}.
//   image  uint8 → v / 255; float → as is (LIDC stores [0, 1]); other ints → as is
//   masks  float → > 0.5; integer and bool → nonzero; stored as uint8 0/1
// Keys are "<patient id>_slice<k>"; the split puts a case in test or validation when its
// patient id (the part before the first '_') is in test_ids.txt / vali_ids.txt, and in
// training otherwise. The project ships the paper's lists in data/lidc-split/.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/data/dataset.hpp"
#include "ambiseg/io/pickle.hpp"

namespace ambiseg::data {

struct pickle_load_options {
  std::size_t max_cases = std::numeric_limits<std::size_t>::max();  // the first n keys only
  // The memo lets a pickle reference one array from any number of cases at two bytes a
  // reference, so a small hostile file could ask for gigabytes of decoded cases. Decoding
  // stops with format_error beyond this many bytes; 0 means 16 × the file size + 64 MiB
  // (a real data set decodes to at most ~5 × its size: uint8 → float images).
  std::uint64_t max_decoded_bytes = 0;
};

namespace pickle_detail {
namespace pk = ambiseg::io::pickle;

// Where a schema error is: the file (or "pickle in memory"), then the case and its key.
struct schema_context {
  std::string source;
  std::string case_key;  // empty at the top level
  std::string key;       // "image" or "masks"; empty for the case as a whole

  std::string where() const {
    std::string w = "load_lidc_pickle: " + source;
    if (!case_key.empty()) w += ": case '" + case_key + "'";
    if (!key.empty()) w += " key '" + key + "'";
    return w;
  }
  template <class E = format_error, class... Args>
  void check(bool ok, Args&&... what) const {
    throw_if<E>(!ok, where(), std::forward<Args>(what)...);
  }
  schema_context at_key(std::string k) const { return {source, case_key, std::move(k)}; }
};

inline std::string describe_source(const pk::document& doc) {
  return doc.source().empty() ? std::string("pickle in memory") : "'" + doc.source().string() + "'";
}

// Case keys are text; anything else is shown by kind, a long key cut short.
inline std::string printable_key(std::string_view text) {
  return text.size() <= 80 ? std::string(text) : std::string(text.substr(0, 80)) + "...";
}

inline std::string extents_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

inline const pk::array& array_of(const pk::value& v, const schema_context& ctx, const char* item) {
  ctx.check(v.is(pk::kind::array), item, " is a ", v.type_name(), ", expected a NumPy array");
  try {
    return v.as_array();
  } catch (const format_error& e) {
    throw format_error(ctx.where() + item + ": " + e.what());
  }
}

// An [H, W] (or [1, H, W] / [H, W, 1]) array's extents.
inline std::pair<std::int64_t, std::int64_t> plane_extents(const pk::array& a, const schema_context& ctx,
                                                           const std::string& item) {
  std::vector<std::int64_t> s;
  for (auto e : a.shape)
    if (e != 1 || a.rank() == 2) s.push_back(e);
  ctx.check<shape_error>(s.size() == 2, item, " has rank ", a.rank(), ", expected a 2-D slice");
  return {s[0], s[1]};
}

// An integer mask is binary when it holds at most two values (0/1, 0/255, …); a third one
// makes it a label map, which "nonzero" would silently merge into one foreground: refused.
inline void binarise_into(const pk::array& a, std::uint8_t* out, const schema_context& ctx, const std::string& item) {
  if (io::is_floating(a.dtype)) {
    const auto v = a.to_vector<double>();
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[i] > 0.5;
  } else {
    const auto v = a.to_vector<std::int64_t>();
    std::int64_t seen[3];
    int distinct = 0;
    for (std::size_t i = 0; i < v.size() && distinct < 3; ++i)
      if (std::find(seen, seen + distinct, v[i]) == seen + distinct) seen[distinct++] = v[i];
    ctx.check<value_error>(distinct <= 2, item, " holds the values ", seen[0], ", ", seen[1], ", ", seen[2],
                           ", ...: a label map with more than two labels, but ambiseg's models segment one "
                           "foreground; give one binary mask per annotator (e.g. label == k)");
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[i] != 0;
  }
}

// What convert_case will allocate for an entry (4 bytes per image pixel, 1 per mask pixel),
// from the array headers alone; arrays convert_case will refuse count nothing.
inline std::uint64_t decoded_bytes(const pk::value& entry) {
  if (!entry.is(pk::kind::dict)) return 0;
  std::uint64_t total = 0;
  auto numel = [](const pk::value* v) -> std::uint64_t {
    if (!v || !v->is(pk::kind::array)) return 0;
    try {
      return static_cast<std::uint64_t>(v->as_array().numel());
    } catch (const format_error&) {
      return 0;
    }
  };
  total += 4 * numel(entry.find("image"));
  if (const pk::value* masks = entry.find("masks")) {
    if (masks->is(pk::kind::list) || masks->is(pk::kind::tuple))
      for (const pk::value* m : masks->items()) total += numel(m);
    else
      total += numel(masks);
  }
  return total;
}

inline case_data convert_case(const schema_context& ctx, const pk::value& entry) {
  ctx.check(entry.is(pk::kind::dict), " is a ", entry.type_name(),
            ", expected a dict with 'image' and 'masks'");
  const pk::value* image_value = entry.find("image");
  const pk::value* masks_value = entry.find("masks");
  ctx.check(image_value != nullptr, " has no key 'image'");
  ctx.check(masks_value != nullptr, " has no key 'masks'");
  const schema_context image_ctx = ctx.at_key("image"), masks_ctx = ctx.at_key("masks");
  const pk::array& image = array_of(*image_value, image_ctx, "");
  const auto [h, w] = plane_extents(image, image_ctx, "");

  case_data c;
  c.id = ctx.case_key;
  c.image = tensor<float>(shape{1, h, w});
  const auto pixels = image.to_vector<float>();
  const bool grey_levels = image.dtype == io::dtype::U8;
  for (std::size_t i = 0; i < pixels.size(); ++i)
    c.image[static_cast<std::int64_t>(i)] = grey_levels ? pixels[i] / 255.0f : pixels[i];
  expect_finite(image_ctx.where().c_str(), c.image.cview());

  std::int64_t mask_count = 0;
  if (masks_value->is(pk::kind::array)) {  // one [m, H, W] array
    const pk::array& m = array_of(*masks_value, masks_ctx, "");
    masks_ctx.check<shape_error>(m.rank() == 3 && m.shape[1] == h && m.shape[2] == w,
                                 " has shape ", extents_text(m.shape), ", expected [m, ", h, ", ", w, "]");
    mask_count = m.shape[0];
    c.masks = tensor<std::uint8_t>(shape{mask_count, h, w});
    binarise_into(m, c.masks.data(), masks_ctx, "");
  } else {
    masks_ctx.check(masks_value->is(pk::kind::list) || masks_value->is(pk::kind::tuple), " is a ",
                    masks_value->type_name(), ", expected a list of H x W arrays or one [m, H, W] array");
    std::vector<const pk::array*> masks;
    for (const pk::value* m : masks_value->items())
      masks.push_back(&array_of(*m, masks_ctx, (": item " + std::to_string(masks.size())).c_str()));
    mask_count = static_cast<std::int64_t>(masks.size());
    c.masks = tensor<std::uint8_t>(shape{mask_count, h, w});
    for (std::size_t k = 0; k < masks.size(); ++k) {
      const std::string item = ": mask " + std::to_string(k);
      const auto [mh, mw] = plane_extents(*masks[k], masks_ctx, item);
      masks_ctx.check<shape_error>(mh == h && mw == w, item, " is ", mh, "x", mw, ", image is ", h,
                                   "x", w);
      binarise_into(*masks[k], c.masks.data() + static_cast<std::int64_t>(k) * h * w, masks_ctx, item);
    }
  }
  masks_ctx.check(mask_count >= 1, " holds no mask");
  return c;
}
}  // namespace pickle_detail

// Converts an already parsed document (the cases in the pickle's key order).
inline case_set lidc_cases(const io::pickle::document& doc, const pickle_load_options& opts = {}) {
  namespace pk = io::pickle;
  namespace pd = pickle_detail;
  const pd::schema_context file_ctx{pd::describe_source(doc), "", ""};
  const pk::value& root = doc.root();
  const std::uint64_t budget = opts.max_decoded_bytes
                                   ? opts.max_decoded_bytes
                                   : 16 * static_cast<std::uint64_t>(doc.input().size()) + (64u << 20);
  std::uint64_t decoded = 0;
  file_ctx.check(root.is(pk::kind::dict), ": top level is a ", root.type_name(),
                 ", expected a dict of cases");
  case_set out;
  std::size_t position = 0;
  for (const auto& [key, entry] : root.as_dict()) {
    if (out.size() >= opts.max_cases) break;
    file_ctx.check(key->is(pk::kind::str) || key->is(pk::kind::bytes), ": the key of case ", position,
                   " is a ", key->type_name(), ", expected str");
    const pd::schema_context ctx{file_ctx.source, pd::printable_key(key->text()), ""};
    decoded += pd::decoded_bytes(*entry);
    ctx.check(decoded <= budget, ": decoded cases exceed ", budget,
              " bytes (arrays shared through the memo?)");
    out.add(pd::convert_case(ctx, *entry));
    ++position;
  }
  return out;
}

inline case_set load_lidc_pickle(const std::filesystem::path& path,
                                 const pickle_load_options& opts = {}) {
  const auto doc = io::pickle::load_file(path);
  return lidc_cases(doc, opts);
}

// --- the split ---------------------------------------------------------------------------

struct patient_split_ids {
  std::unordered_set<std::string> test, validation;
};

inline std::unordered_set<std::string> read_id_list(const std::filesystem::path& file) {
  std::ifstream in(file);
  throw_if<io_error>(!in, "read_id_list: cannot open '", file.string(), "'");
  std::unordered_set<std::string> ids;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) ids.insert(line);
  }
  return ids;
}

// <dir>/test_ids.txt and <dir>/vali_ids.txt (the project's copy is data/lidc-split/).
inline patient_split_ids read_split_ids(const std::filesystem::path& dir) {
  patient_split_ids s{read_id_list(dir / "test_ids.txt"), read_id_list(dir / "vali_ids.txt")};
  for (const auto& id : s.test)
    throw_if<value_error>(s.validation.count(id) != 0, "read_split_ids: patient '", id,
                          "' is in both the test and the validation list");
  return s;
}

struct split_indices {
  std::vector<std::size_t> train, validation, test;
};

template <class Keys>
split_indices split_by_patient(const Keys& keys, const patient_split_ids& ids) {
  split_indices out;
  std::size_t i = 0;
  for (const auto& key : keys) {
    const std::string patient(patient_id(key));
    if (ids.test.count(patient)) out.test.push_back(i);
    else if (ids.validation.count(patient)) out.validation.push_back(i);
    else out.train.push_back(i);
    ++i;
  }
  return out;
}

template <dataset D>
split_indices split_by_patient(const D& data, const patient_split_ids& ids) {
  std::vector<std::string_view> keys;
  for (std::size_t i = 0; i < data.size(); ++i) keys.push_back(data[i].id);
  return split_by_patient(keys, ids);
}

}  // namespace ambiseg::data
