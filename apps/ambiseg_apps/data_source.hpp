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
//
// --folds K --fold I replaces any of these splits by K-fold cross-validation over every
// case the source has (fold_of_cases below): fold I is the test set, the rest train.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
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
  std::optional<std::int64_t> folds, fold;         // --folds K --fold I (both or neither)
};

// The parsed request's fold flags, checked together (every command that reads data).
inline void check_fold_request(const data_request& r) {
  throw_if<value_error>(r.fold.has_value() != r.folds.has_value(),
                        r.fold ? "--fold I needs --folds K (the number of folds)"
                               : "--folds K needs --fold I (which fold is the test set, 0 to K-1)");
  if (!r.folds) return;
  throw_if<value_error>(*r.fold >= *r.folds, "--fold ", *r.fold, " is not a fold of --folds ", *r.folds,
                        " (0 to ", *r.folds - 1, ")");
  // throw_if builds its message eagerly: split_dir is read only when it is there.
  if (r.split_dir)
    throw value_error("--folds replaces the --split '" + r.split_dir->string() +
                      "' test/train split by K folds; give one of them");
  throw_if<value_error>(r.spec == "synthetic" && *r.folds > r.synthetic_train, "--folds ", *r.folds,
                        " exceeds the ", r.synthetic_train, " synthetic cases (--synthetic-images)");
}

// "I/K", or "none" without --folds: recorded in checkpoints (folds_key), so that eval can
// tell when it scores cases the model trained on, and a resume that it trains on the same.
inline constexpr const char* folds_key = "data_folds";
inline std::string folds_text(const data_request& d) {
  return d.folds ? std::to_string(*d.fold) + "/" + std::to_string(*d.folds) : std::string("none");
}

// The fold of each case, in the set's order: the cases sorted by id (as text; the load
// position breaks ties), then fold = position mod k. It depends on the ids alone (no seed,
// not the loader's order), so train and eval agree and the folds' sizes differ by at most one.
template <class Ids>
std::vector<std::int64_t> fold_of_cases(const Ids& ids, std::int64_t k) {
  const std::size_t n = ids.size();
  throw_if<value_error>(k < 2 || static_cast<std::size_t>(k) > n, "--folds ", k, ": the data has ", n,
                        " cases; K must be between 2 and the number of cases");
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return std::string_view(ids[a]) < std::string_view(ids[b]); });
  std::vector<std::int64_t> fold(n);
  for (std::size_t p = 0; p < n; ++p) fold[order[p]] = static_cast<std::int64_t>(p) % k;
  return fold;
}

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
inline std::vector<std::string> ids_of(const data::case_set& cases) {
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < cases.size(); ++i) ids.emplace_back(cases[i].id);
  return ids;
}
// Fold r.fold of `all` tests, the other folds train (both in the loaded order). Returns
// the positions in `all` of the test cases.
inline std::vector<std::size_t> cross_validate(const data::case_set& all, const data_request& r, loaded_data& out) {
  const auto fold = fold_of_cases(ids_of(all), *r.folds);
  std::vector<std::size_t> train, test;
  for (std::size_t i = 0; i < all.size(); ++i) (fold[i] == *r.fold ? test : train).push_back(i);
  out.train = all.subset(train);
  out.test = all.subset(test);
  return test;
}
inline data::case_set joined(const data::case_set& a, const data::case_set& b) {
  data::case_set all;
  for (const data::case_set* s : {&a, &b})
    for (std::size_t i = 0; i < s->size(); ++i) {
      const data::case_data& c = s->data(i);
      all.add({c.id, c.image.clone(), c.masks.clone()});
    }
  return all;
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
  if (r.folds) {
    cross_validate(all, r, out);
    return;
  }
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
  check_fold_request(r);
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
    if (r.folds) {
      // The folds divide training images 0…N−1; the separate test stream is not used.
      const auto all = out.generator->make_cases(0, static_cast<std::uint64_t>(r.synthetic_train));
      for (std::size_t i : source_detail::cross_validate(all, r, out)) out.test_indices.push_back(i);
      return out;
    }
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
    if (r.folds) source_detail::cross_validate(source_detail::joined(out.train, out.test), r, out);
    return out;
  }
  if (source_detail::is_cimd_root(path)) {
    out.kind = "cimd_folder";
    if (r.folds) source_detail::cross_validate(data::load_cimd_folder(path), r, out);
    else source_detail::hold_out(data::load_cimd_folder(path), out);
    return out;
  }
  throw format_error("load_data: cannot tell the layout of '" + r.spec +
                     "' (expected images/ + gt/, training/ + testing/ of case folders, or case folders "
                     "with label0_.jpg)");
}

}  // namespace ambiseg::apps
