// ambiseg/data/batches.hpp — what a trainer draws from a data set, and the fixed test set.
//
//   B batch, C image channels (1 grey or 3 ImageNet-normalised), s crop size.
//   training_batch::images [B, C, s, s]   the encoded images
//   training_batch::x0     [B, 1, s, s]   2m − 1 ∈ {−1, +1} of ONE annotation per case,
//                                          drawn uniformly (SPEC §1)
//   batch_sampler          shuffles the case order every epoch (like a PyTorch DataLoader
//                          with shuffle=True), crops (random or central), draws annotations;
//                          all randomness from one ambiseg::rng, so a seed fixes the run
//   evaluation_set(...)    every case cropped once with windows fixed by a seed
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/data/crops.hpp"
#include "ambiseg/data/dataset.hpp"

namespace ambiseg::data {

enum class crop_mode { central, random };

struct batch_config {
  std::int64_t batch_size = 8;
  std::int64_t crop_size = 128;  // s; equal to the image size means "the whole image"
  crop_mode crop = crop_mode::central;
  image_encoding encoding = image_encoding::grey;
};

struct training_batch {
  tensor<float> images;               // [B, C, s, s]
  tensor<float> x0;                   // [B, 1, s, s]
  std::vector<std::size_t> cases;     // which case each row came from
  std::vector<std::int64_t> annotation;  // which of its annotations
  std::vector<crop_window> windows;      // where it was cropped
};

template <dataset D>
class batch_sampler {
 public:
  // Keeps a reference to `data`, which must outlive the sampler (temporaries are refused).
  batch_sampler(const D&& data, batch_config config, std::uint64_t seed) = delete;
  batch_sampler(const D& data, batch_config config, std::uint64_t seed)
      : data_(data), config_(config), rng_(seed) {
    throw_if<value_error>(data_.size() == 0, "batch_sampler: empty data set");
    throw_if<value_error>(config_.batch_size < 1, "batch_sampler: batch size ",
                          config_.batch_size);
    for (std::size_t i = 0; i < data_.size(); ++i) {
      const case_ref c = data_[i];
      throw_if<shape_error>(c.image.size(0) != 1, "batch_sampler: case '", c.id,
                            "' image has ", c.image.size(0), " channels, expected 1 (grey)");
      crop_detail::check(c.height(), c.width(), config_.crop_size, "batch_sampler");
    }
    order_.resize(data_.size());
    reshuffle();
  }

  // Fills `out` (allocating only on the first call or a larger batch) with rows
  // [first, first + count) of the next batch (count −1: every row). The draws (order,
  // windows, annotations) are made for every row whichever are kept, so the sampler's state
  // does not depend on them: a data-parallel rank crops its rows only, a resume replaying
  // to its step crops none. cases, annotation and windows describe every row.
  void next(training_batch& out, std::int64_t first = 0, std::int64_t count = -1) {
    const std::int64_t b = config_.batch_size, s = config_.crop_size;
    if (count < 0) count = b - first;
    throw_if<value_error>(first < 0 || first + count > b, "batch_sampler::next: rows [", first, ", ", first + count,
                          ") are not inside the batch of ", b);
    const std::int64_t channels = encoded_channels(config_.encoding);
    out.images.resize(shape{count, channels, s, s});
    out.x0.resize(shape{count, 1, s, s});
    out.cases.resize(static_cast<std::size_t>(b));
    out.annotation.resize(static_cast<std::size_t>(b));
    out.windows.resize(static_cast<std::size_t>(b));
    grey_.resize(shape{1, s, s});
    mask_.resize(shape{1, s, s});
    for (std::int64_t row = 0; row < b; ++row) {
      if (cursor_ == order_.size()) reshuffle();
      const std::size_t index = order_[cursor_++];
      const case_ref c = data_[index];
      const crop_window win = config_.crop == crop_mode::random
                                  ? random_window(c.height(), c.width(), s, rng_)
                                  : central_window(c.height(), c.width(), s);
      const auto k = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(c.annotations())));
      if (row >= first && row < first + count) {
        crop(c.image, win, grey_.view());
        crop(c.masks.slice0(k, 1), win, mask_.view());
        const std::int64_t plane = s * s, kept = row - first;
        encode_image(grey_.cview(), config_.encoding,
                     tensor_view<float>(out.images.data() + kept * channels * plane, shape{channels, s, s}));
        float* x0 = out.x0.data() + kept * plane;
        for (std::int64_t i = 0; i < plane; ++i) x0[i] = mask_[i] ? 1.0f : -1.0f;
      }
      out.cases[static_cast<std::size_t>(row)] = index;
      out.annotation[static_cast<std::size_t>(row)] = k;
      out.windows[static_cast<std::size_t>(row)] = win;
    }
  }

  std::uint64_t epoch() const { return epoch_; }
  rng& generator() { return rng_; }

 private:
  void reshuffle() {
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    for (std::size_t i = order_.size(); i > 1; --i)  // Fisher–Yates with the portable rng
      std::swap(order_[i - 1], order_[rng_.below(i)]);
    cursor_ = 0;
    ++epoch_;
  }

  const D& data_;
  batch_config config_;
  rng rng_;
  tensor<float> grey_;          // [1, s, s] scratch
  tensor<std::uint8_t> mask_;   // [1, s, s] scratch
  std::vector<std::size_t> order_;
  std::size_t cursor_ = 0;
  std::uint64_t epoch_ = 0;
};

// Every case cropped once: central when crop_size covers the image or mode is central,
// else the seeded evaluation_window of its index, so every run sees the same test set.
template <dataset D>
case_set evaluation_set(const D& data, std::int64_t crop_size, crop_mode mode, std::uint64_t seed) {
  case_set out;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const case_ref c = data[i];
    const crop_window win = mode == crop_mode::random
                                ? evaluation_window(c.height(), c.width(), crop_size, seed, i)
                                : central_window(c.height(), c.width(), crop_size);
    out.add(crop_case(c, win));
  }
  return out;
}

}  // namespace ambiseg::data
