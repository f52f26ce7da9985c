// Tests of crops, batches and the synthetic lesion data set (its oracle in particular).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "ambiseg/data/all.hpp"

using namespace ambiseg;
using namespace ambiseg::data;

namespace {
// A case whose pixels encode their position, so any crop can be checked exactly:
// image (y, x) = (y·W + x) / (H·W); mask k (y, x) = (y + x + k) odd.
case_data position_case(std::int64_t h, std::int64_t w, std::int64_t m) {
  case_data c{"pos", tensor<float>(shape{1, h, w}), tensor<std::uint8_t>(shape{m, h, w})};
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      c.image[y * w + x] = static_cast<float>(y * w + x) / static_cast<float>(h * w);
      for (std::int64_t k = 0; k < m; ++k) c.masks[(k * h + y) * w + x] = (y + x + k) % 2;
    }
  return c;
}

bool same_bits(const tensor<float>& a, const tensor<float>& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0;
}
}  // namespace

TEST_CASE("crops: windows", "[data][crops]") {
  CHECK(central_window(128, 128, 128) == crop_window{0, 0, 128, 128});
  CHECK(central_window(128, 128, 64) == crop_window{32, 32, 64, 64});
  CHECK(central_window(7, 9, 4) == crop_window{1, 2, 4, 4});
  CHECK_THROWS_AS(central_window(32, 32, 64), shape_error);
  CHECK_THROWS_AS(central_window(32, 32, 0), shape_error);

  // Seeded reproducibility, and uniform placement: 128 → 126 has 3 positions per axis.
  rng a(42), b(42);
  std::vector<int> top_count(3, 0), left_count(3, 0);
  const int draws = 30000;
  for (int i = 0; i < draws; ++i) {
    const auto wa = random_window(128, 128, 126, a);
    REQUIRE(wa == random_window(128, 128, 126, b));
    ++top_count[static_cast<std::size_t>(wa.top)];
    ++left_count[static_cast<std::size_t>(wa.left)];
  }
  const double sd = std::sqrt(draws * (1.0 / 3) * (2.0 / 3));
  for (int i = 0; i < 3; ++i) {
    CHECK(std::abs(top_count[static_cast<std::size_t>(i)] - draws / 3.0) < 5 * sd);
    CHECK(std::abs(left_count[static_cast<std::size_t>(i)] - draws / 3.0) < 5 * sd);
  }
  // 64 in 128: every top-left in [0, 64] is reachable, nothing outside.
  std::set<std::int64_t> tops;
  for (int i = 0; i < 5000; ++i) {
    const auto w = random_window(128, 128, 64, a);
    REQUIRE((w.top >= 0 && w.top <= 64 && w.left >= 0 && w.left <= 64));
    tops.insert(w.top);
  }
  CHECK(tops.size() == 65);

  // Evaluation windows: fixed by (seed, index), varied across indices and seeds.
  std::set<std::pair<std::int64_t, std::int64_t>> places;
  for (std::uint64_t i = 0; i < 50; ++i) {
    const auto w = evaluation_window(128, 128, 64, 7, i);
    CHECK(w == evaluation_window(128, 128, 64, 7, i));
    places.insert({w.top, w.left});
  }
  CHECK(places.size() > 40);
  int differing = 0;
  for (std::uint64_t i = 0; i < 50; ++i)
    differing += !(evaluation_window(128, 128, 64, 7, i) == evaluation_window(128, 128, 64, 8, i));
  CHECK(differing > 40);
}

TEST_CASE("crops: the same window for the image and every mask", "[data][crops]") {
  const case_data c = position_case(20, 24, 4);
  const crop_window win{3, 5, 10, 10};
  const case_data out = crop_case(c.ref(), win);
  REQUIRE(out.image.shape() == shape{1, 10, 10});
  REQUIRE(out.masks.shape() == shape{4, 10, 10});
  for (std::int64_t y = 0; y < 10; ++y)
    for (std::int64_t x = 0; x < 10; ++x) {
      CHECK(out.image[y * 10 + x] == c.image[(y + 3) * 24 + (x + 5)]);
      for (std::int64_t k = 0; k < 4; ++k)
        CHECK(int(out.masks[(k * 10 + y) * 10 + x]) == (y + 3 + x + 5 + k) % 2);
    }
  CHECK_THROWS_AS(crop_case(c.ref(), crop_window{15, 0, 10, 10}), shape_error);
  CHECK_THROWS_AS(crop_case(c.ref(), crop_window{-1, 0, 10, 10}), shape_error);
}

TEST_CASE("batches: a slice of rows crops those rows of the same batch; the draws go on alike", "[data][batches]") {
  case_set cases;
  for (int i = 0; i < 7; ++i) {
    case_data c = position_case(16, 16, 3);
    c.id = "case" + std::to_string(i);
    cases.add(std::move(c));
  }
  batch_config cfg;
  cfg.batch_size = 6;
  cfg.crop_size = 8;
  batch_sampler<case_set> whole(cases, cfg, 9), sliced(cases, cfg, 9), none(cases, cfg, 9);
  training_batch all, part, skipped;
  for (int step = 0; step < 20; ++step) {  // several epochs: 7 cases, 6 rows a batch
    const std::int64_t first = step % 4, count = 1 + step % 3;
    whole.next(all);
    sliced.next(part, first, count);
    none.next(skipped, 0, 0);
    REQUIRE(part.images.shape() == shape{count, 1, 8, 8});
    REQUIRE(part.x0.shape() == shape{count, 1, 8, 8});
    REQUIRE(skipped.images.shape() == shape{0, 1, 8, 8});
    CHECK(part.cases == all.cases);  // every row described
    CHECK(skipped.windows.size() == all.windows.size());
    for (std::int64_t i = 0; i < count * 64; ++i) {
      REQUIRE(part.images[i] == all.images[first * 64 + i]);
      REQUIRE(part.x0[i] == all.x0[first * 64 + i]);
    }
  }
  const auto next_whole = whole.generator()(), next_sliced = sliced.generator()(), next_none = none.generator()();
  CHECK(next_whole == next_sliced);  // the same generator state after the same draws
  CHECK(next_whole == next_none);
  CHECK_THROWS_AS(whole.next(all, 4, 3), value_error);
}

TEST_CASE("batches: encoding, one annotation per case, seeded", "[data][batches]") {
  case_set cases;
  for (int i = 0; i < 5; ++i) {
    case_data c = position_case(16, 16, 4);
    c.id = "case" + std::to_string(i);
    for (auto& v : c.image) v = std::fmod(v + 0.1f * static_cast<float>(i), 1.0f);
    cases.add(std::move(c));
  }
  batch_config cfg;
  cfg.batch_size = 5;
  cfg.crop_size = 8;
  cfg.crop = crop_mode::random;
  cfg.encoding = image_encoding::imagenet_rgb;
  batch_sampler<case_set> sampler(cases, cfg, 123), replay(cases, cfg, 123);
  training_batch batch, again;
  std::vector<int> annotation_count(4, 0);
  for (int step = 0; step < 400; ++step) {
    sampler.next(batch);
    replay.next(again);
    REQUIRE(batch.images.shape() == shape{5, 3, 8, 8});
    REQUIRE(batch.x0.shape() == shape{5, 1, 8, 8});
    REQUIRE(same_bits(batch.images, again.images));
    REQUIRE(same_bits(batch.x0, again.x0));
    // One epoch per batch here: every case exactly once.
    std::set<std::size_t> seen(batch.cases.begin(), batch.cases.end());
    REQUIRE(seen.size() == 5);
    for (std::int64_t r = 0; r < 5; ++r) {
      const auto row = static_cast<std::size_t>(r);
      const case_ref c = cases[batch.cases[row]];
      const crop_window& w = batch.windows[row];
      const std::int64_t k = batch.annotation[row];
      ++annotation_count[static_cast<std::size_t>(k)];
      for (std::int64_t y = 0; y < 8; ++y)
        for (std::int64_t x = 0; x < 8; ++x) {
          const float v = c.image[(w.top + y) * 16 + w.left + x];
          for (std::int64_t ch = 0; ch < 3; ++ch)
            REQUIRE(batch.images[((r * 3 + ch) * 8 + y) * 8 + x] ==
                    Approx((v - imagenet_mean[static_cast<std::size_t>(ch)]) /
                           imagenet_std[static_cast<std::size_t>(ch)]));
          const int m = c.masks[(k * 16 + w.top + y) * 16 + w.left + x];
          REQUIRE(batch.x0[(r * 8 + y) * 8 + x] == (m ? 1.0f : -1.0f));
        }
    }
  }
  // Annotations drawn uniformly: 2000 draws over 4.
  for (int k = 0; k < 4; ++k)
    CHECK(std::abs(annotation_count[static_cast<std::size_t>(k)] - 500) < 5 * std::sqrt(2000 * 0.25 * 0.75));

  // Grey encoding and central crop: the image as is, in the middle.
  cfg.encoding = image_encoding::grey;
  cfg.crop = crop_mode::central;
  batch_sampler<case_set> central(cases, cfg, 1);
  central.next(batch);
  REQUIRE(batch.images.shape() == shape{5, 1, 8, 8});
  const case_ref c0 = cases[batch.cases[0]];
  CHECK(batch.windows[0] == crop_window{4, 4, 8, 8});
  CHECK(batch.images[0] == c0.image[4 * 16 + 4]);

  cfg.crop_size = 32;
  CHECK_THROWS_AS(batch_sampler<case_set>(cases, cfg, 1), shape_error);

  // The evaluation set is fixed by its seed.
  const case_set e1 = evaluation_set(cases, 8, crop_mode::random, 99);
  const case_set e2 = evaluation_set(cases, 8, crop_mode::random, 99);
  REQUIRE(e1.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK(same_bits(e1.data(i).image, e2.data(i).image));
    CHECK(e1[i].masks.shape() == shape{4, 8, 8});
  }
}

TEST_CASE("synthetic lesions: deterministic, in range, two sizes", "[data][synthetic]") {
  for (std::int64_t size : {64, 128}) {
    synthetic_lesions a({.size = size, .n_annotators = 4, .seed = 11});
    synthetic_lesions b({.size = size, .n_annotators = 4, .seed = 11});
    synthetic_lesions other({.size = size, .n_annotators = 4, .seed = 12});
    for (std::uint64_t i = 0; i < 5; ++i) {
      const auto img = a.image(i);
      REQUIRE(img.shape() == shape{1, size, size});
      CHECK(same_bits(img, b.image(i)));
      CHECK_FALSE(same_bits(img, other.image(i)));
      CHECK_FALSE(same_bits(img, a.image(i + 1)));
      for (auto v : img) REQUIRE((v >= 0.0f && v <= 1.0f));
      const auto c1 = a.make_case(i), c2 = b.make_case(i);
      REQUIRE(c1.masks.shape() == shape{4, size, size});
      CHECK(std::memcmp(c1.masks.data(), c2.masks.data(), static_cast<std::size_t>(c1.masks.numel())) == 0);
      const auto lesions = a.lesions(i);
      CHECK((lesions.size() >= 1 && lesions.size() <= 3));
    }
    // Annotation k does not depend on how many are drawn at once.
    rng g1(5), g2(5);
    const auto four = a.annotations(3, 4, g1);
    const auto two = a.annotations(3, 2, g2);
    CHECK(std::memcmp(four.data(), two.data(), static_cast<std::size_t>(two.numel())) == 0);
  }
  CHECK_THROWS_AS(synthetic_lesions({.size = 8}), value_error);
  const auto cases = synthetic_lesions({.size = 64, .seed = 3}).make_cases(10, 4);
  CHECK(cases.size() == 4);
  CHECK(cases[0].id == "synthetic_10");
}

TEST_CASE("synthetic lesions: the lesion is brighter than its surroundings", "[data][synthetic]") {
  synthetic_lesions gen({.size = 128, .seed = 21, .noise_std = 0.0});
  for (std::uint64_t i = 0; i < 10; ++i) {
    const auto img = gen.image(i);
    for (const auto& l : gen.lesions(i)) {
      // Centre vs a point 2.5 semi-axes away along the lesion's own x axis (if inside).
      const auto cy = static_cast<std::int64_t>(std::lround(l.cy));
      const auto cx = static_cast<std::int64_t>(std::lround(l.cx));
      const double d = 2.5 * l.rx;
      const auto oy = static_cast<std::int64_t>(std::lround(l.cy + d * std::sin(l.angle)));
      const auto ox = static_cast<std::int64_t>(std::lround(l.cx + d * std::cos(l.angle)));
      if (oy < 0 || oy >= 128 || ox < 0 || ox >= 128) continue;
      // Background waves vary by at most 2·Σ amplitudes·(k·distance) — small against the
      // contrast for the smallest contrast (0.06) only if close; compare to contrast / 3.
      CHECK(img[cy * 128 + cx] - img[oy * 128 + ox] > l.contrast / 3);
    }
  }
}

TEST_CASE("synthetic lesions: the oracle marks each lesion with its stated probability",
          "[data][synthetic]") {
  synthetic_lesions gen({.size = 64, .seed = 2024});
  rng g(77);
  const std::int64_t m = 1500;
  double lowest = 1, highest = 0;
  int lesions_checked = 0;
  for (std::uint64_t i = 0; i < 12; ++i) {
    const auto found = gen.lesions(i);
    const auto ann = gen.annotations(i, m, g);
    for (const auto& l : found) {
      const auto cy = static_cast<std::int64_t>(std::lround(l.cy));
      const auto cx = static_cast<std::int64_t>(std::lround(l.cx));
      std::int64_t marked = 0;
      std::set<std::int64_t> areas;
      for (std::int64_t k = 0; k < m; ++k) {
        const std::uint8_t* mask = ann.data() + k * 64 * 64;
        if (!mask[cy * 64 + cx]) continue;
        ++marked;
        // The outline varies between annotators: area of the marked lesion's bounding box.
        std::int64_t area = 0;
        const auto r = static_cast<std::int64_t>(1.7 * std::max(l.rx, l.ry)) + 1;
        for (std::int64_t y = std::max<std::int64_t>(0, cy - r); y <= std::min<std::int64_t>(63, cy + r); ++y)
          for (std::int64_t x = std::max<std::int64_t>(0, cx - r); x <= std::min<std::int64_t>(63, cx + r); ++x)
            area += mask[y * 64 + x];
        areas.insert(area);
      }
      const double freq = static_cast<double>(marked) / m;
      const double sd = std::sqrt(l.p_annotated * (1 - l.p_annotated) / m);
      INFO("image " << i << " contrast " << l.contrast << " p " << l.p_annotated);
      CHECK(std::abs(freq - l.p_annotated) < 5 * sd + 1e-9);
      CHECK(l.p_annotated == Approx(gen.annotation_probability(l.contrast)));
      if (marked > 10) CHECK(areas.size() > 3);  // boundaries are perturbed
      lowest = std::min(lowest, l.p_annotated);
      highest = std::max(highest, l.p_annotated);
      ++lesions_checked;
    }
  }
  CHECK(lesions_checked >= 12);
  CHECK(lowest < 0.65);   // faint lesions are ambiguous …
  CHECK(highest > 0.9);   // … strong ones are nearly always marked
  CHECK(gen.annotation_probability(0.06) == Approx(0.5));
  CHECK(gen.annotation_probability(0.45) == Approx(1.0));
}

TEST_CASE("synthetic lesions: pixel noise has the configured standard deviation", "[data][synthetic]") {
  // Same seed with and without noise: the difference is the noise alone (no lesions, so no
  // clamping near 1; the background stays above 0.05).
  synthetic_config noisy{.size = 128, .seed = 5, .min_lesions = 0, .max_lesions = 0, .noise_std = 0.03};
  synthetic_config clean = noisy;
  clean.noise_std = 0.0;
  double sum = 0, sum2 = 0, n = 0;
  for (std::uint64_t i = 0; i < 20; ++i) {
    const auto a = synthetic_lesions(noisy).image(i), b = synthetic_lesions(clean).image(i);
    for (std::int64_t p = 0; p < a.numel(); ++p) {
      const double d = a[p] - b[p];
      sum += d, sum2 += d * d, n += 1;
    }
  }
  const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  CHECK(std::abs(mean) < 5 * 0.03 / std::sqrt(n));
  CHECK(sd == Approx(0.03).epsilon(0.01));
}
