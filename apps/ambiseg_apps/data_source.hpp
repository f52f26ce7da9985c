// ambiseg_apps/data_source.hpp — what `--data` names, detected and loaded with its split.
//
//   synthetic          synthetic_lesions at the crop size: training images 0…n_train−1,
//                      test images from 1,000,000 on (disjoint streams of the same seed)
//   FILE.pkl           LIDC schema (PHiSeg pickle); with a split folder (test_ids.txt,
//                      vali_ids.txt) the paper's patient split, otherwise a deterministic
//                      hold-out of every 10th case for testing
//   DIR/images, DIR/gt the DeepMind LIDC PNG crops (same split rules as the pickle)
//   DIR/training, DIR/testing, or DIR/<case>/label0_.jpg
//                      the lidc-cimd-samples layout (its own training/testing folders)
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/data/all.hpp"

namespace ambiseg::apps {

struct data_request {
  std::string spec = "synthetic";           // "synthetic" or a path
  std::int64_t synthetic_size = 64;         // image size of the synthetic set
  std::int64_t synthetic_train = 4096;      // training images
  std::int64_t synthetic_test = 64;         // test images
  std::uint64_t synthetic_seed = 0;
  std::optional<std::filesystem::path> split_dir;  // test_ids.txt / vali_ids.txt
};

inline constexpr std::uint64_t synthetic_test_offset = 1'000'000;

struct loaded_data {
  std::string kind;          // synthetic | pickle | deepmind_png | cimd_folder
  data::case_set train, test;
  std::optional<data::synthetic_lesions> generator;  // synthetic only: the oracle
  std::vector<std::uint64_t> test_indices;           // synthetic only: generator indices of `test`
};

namespace source_detail {
namespace fs = std::filesystem;

inline bool is_cimd_case(const fs::path& dir) {
  return fs::is_regular_file(dir / "label0_.jpg");
}
inline bool is_cimd_root(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && is_cimd_case(e.path())) return true;
  return false;
}
// Every 10th case (by position) for testing when no patient split is given.
inline void hold_out(data::case_set all, loaded_data& out) {
  std::vector<std::size_t> train, test;
  for (std::size_t i = 0; i < all.size(); ++i) (i % 10 == 9 ? test : train).push_back(i);
  if (test.empty()) test = train;  // a tiny set: evaluate on what exists
  out.train = all.subset(train);
  out.test = all.subset(test);
}
inline void split(data::case_set all, const data_request& r, loaded_data& out) {
  if (!r.split_dir) return hold_out(std::move(all), out);
  const auto ids = data::read_split_ids(*r.split_dir);
  const auto s = data::split_by_patient(all, ids);
  throw_if<value_error>(s.train.empty() || s.test.empty(), "load_data: the split in '", r.split_dir->string(),
                        "' leaves ", s.train.size(), " training and ", s.test.size(), " test cases");
  out.train = all.subset(s.train);
  out.test = all.subset(s.test);
}

}  // namespace source_detail

inline loaded_data load_data(const data_request& r) {
  namespace fs = std::filesystem;
  loaded_data out;
  if (r.split_dir) {
    throw_if<value_error>(r.spec == "synthetic", "--split '", r.split_dir->string(),
                          "' splits a LIDC data set by patient; the synthetic data has its own test images");
    throw_if<io_error>(!fs::is_directory(*r.split_dir), "--split '", r.split_dir->string(),
                       "' is not a folder (it holds test_ids.txt and vali_ids.txt)");
  }
  if (r.spec == "synthetic") {
    throw_if<value_error>(r.synthetic_train < 1 || r.synthetic_test < 1, "load_data: synthetic needs >= 1 ",
                          "training and test image (got ", r.synthetic_train, ", ", r.synthetic_test, ")");
    out.kind = "synthetic";
    out.generator.emplace(data::synthetic_config{.size = r.synthetic_size, .seed = r.synthetic_seed});
    out.train = out.generator->make_cases(0, static_cast<std::uint64_t>(r.synthetic_train));
    out.test = out.generator->make_cases(synthetic_test_offset, static_cast<std::uint64_t>(r.synthetic_test));
    for (std::int64_t i = 0; i < r.synthetic_test; ++i)
      out.test_indices.push_back(synthetic_test_offset + static_cast<std::uint64_t>(i));
    return out;
  }
  const fs::path path(r.spec);
  throw_if<io_error>(!fs::exists(path), "load_data: '", r.spec, "' is neither 'synthetic' nor an existing path");
  if (fs::is_regular_file(path)) {
    throw_if<value_error>(path.extension() != ".pkl", "load_data: '", r.spec,
                          "' is a file but not a .pkl (LIDC pickle)");
    out.kind = "pickle";
    source_detail::split(data::load_lidc_pickle(path), r, out);
    return out;
  }
  if (fs::is_directory(path / "images") && fs::is_directory(path / "gt")) {
    out.kind = "deepmind_png";
    source_detail::split(data::load_lidc_crops_png(path), r, out);
    return out;
  }
  if (fs::is_directory(path / "training") && fs::is_directory(path / "testing") &&
      source_detail::is_cimd_root(path / "training")) {
    out.kind = "cimd_folder";
    out.train = data::load_cimd_folder(path / "training");
    out.test = data::load_cimd_folder(path / "testing");
    return out;
  }
  if (source_detail::is_cimd_root(path)) {
    out.kind = "cimd_folder";
    source_detail::hold_out(data::load_cimd_folder(path), out);
    return out;
  }
  throw format_error("load_data: cannot tell the layout of '" + r.spec +
                     "' (expected images/ + gt/, training/ + testing/ of case folders, or case folders "
                     "with label0_.jpg)");
}

}  // namespace ambiseg::apps
