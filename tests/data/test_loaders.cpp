// Tests of the file loaders: the LIDC pickle schema (real QUBIQ file + fixture), the
// patient split, the CIMD JPEG folders (real), the DeepMind PNG crop layout (synthetic
// tree), and PNG/JPEG decoding and encoding.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ambiseg/data/folders.hpp"
#include "ambiseg/data/pickle_dataset.hpp"
#include "ambiseg/io/image.hpp"

namespace fs = std::filesystem;
using namespace ambiseg;
using namespace ambiseg::data;

namespace {
const std::string shared_data = std::string(AMBISEG_SHARED_DIR) + "/data";
const std::string project_root = std::string(AMBISEG_FIXTURE_DIR) + "/../..";

// The real files live in the project's shared/ folder beside the repository; a checkout
// without it skips these checks (with a warning) instead of failing.
bool shared_present(const std::string& path) {
  if (std::filesystem::exists(path)) return true;
  WARN("skipped: " << path << " is absent (the project's shared/ folder)");
  return false;
}

std::int64_t mask_area(const case_ref& c, std::int64_t k) {
  std::int64_t a = 0;
  const auto m = c.masks.slice0(k, 1);
  for (auto v : m) a += v;
  return a;
}

fs::path fresh_temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("ambiseg_test_data_" + name + "_" +
                                                    std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::uint8_t> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST_CASE("lidc pickle: the real QUBIQ brain-growth file", "[data][lidc]") {
  // Reference values:
  //   /usr/bin/python3 -c "import pickle; d=pickle.load(open('brain_growth_alpha.pkl','rb'));
  //     c=d['case39']; print(c['image'][10,20], c['image'][100,77], int(c['image'].sum()),
  //     [int(m.sum()) for m in c['masks']]);
  //     print(sum(int(m.sum()) for k in d for m in d[k]['masks']))"
  //   → 0 73 763050 [2513, 2326, 2144, 2162, 2492, 2477, 2659] / 613585
  if (!shared_present(shared_data + "/qubiq-brain-growth/brain_growth_alpha.pkl")) return;
  const auto cases = load_lidc_pickle(shared_data + "/qubiq-brain-growth/brain_growth_alpha.pkl");
  REQUIRE(cases.size() == 39);
  std::int64_t all_mask_pixels = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const case_ref c = cases[i];
    CHECK(c.image.shape() == shape{1, 128, 128});
    CHECK(c.masks.shape() == shape{7, 128, 128});
    std::int64_t bad = 0;
    for (auto m : c.masks) {
      bad += m > 1;
      all_mask_pixels += m;
    }
    for (auto v : c.image) bad += !(v >= 0.0f && v <= 1.0f);
    CHECK(bad == 0);
  }
  CHECK(all_mask_pixels == 613585);
  CHECK(cases[0].id == "case01");
  const case_ref last = cases[38];
  CHECK(last.id == "case39");
  CHECK(last.image[10 * 128 + 20] == 0.0f);
  CHECK(last.image[100 * 128 + 77] == 73.0f / 255.0f);
  double sum = 0;
  for (auto v : last.image) sum += v;
  CHECK(sum * 255.0 == Approx(763050).epsilon(1e-6));
  const std::int64_t areas[] = {2513, 2326, 2144, 2162, 2492, 2477, 2659};
  for (int k = 0; k < 7; ++k) CHECK(mask_area(last, k) == areas[k]);
  CHECK(cases[0].image[64 * 128 + 64] == 59.0f / 255.0f);  // see test_pickle.cpp

  pickle_load_options first_five;
  first_five.max_cases = 5;
  CHECK(load_lidc_pickle(shared_data + "/qubiq-brain-growth/brain_growth_alpha.pkl", first_five)
            .size() == 5);
}

TEST_CASE("lidc pickle: float images and the schema of SPEC 9", "[data][lidc]") {
  // tools/make_pickle_fixtures.py::lidc_mini(): image (x + 8y + k) % 64 / 63 (float32),
  // mask r = [x >= r and y >= r], area (8 - r)^2.
  const auto cases = load_lidc_pickle(std::string(AMBISEG_FIXTURE_DIR) + "/pickle/lidc_mini_p4.pkl");
  REQUIRE(cases.size() == 4);
  const char* ids[] = {"p0_slice0", "p0_slice1", "p1_slice0", "p2_slice0"};
  const int slice[] = {0, 1, 0, 0};
  for (int i = 0; i < 4; ++i) {
    const case_ref c = cases[static_cast<std::size_t>(i)];
    CHECK(c.id == ids[i]);
    REQUIRE(c.image.shape() == shape{1, 8, 8});
    REQUIRE(c.masks.shape() == shape{4, 8, 8});
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x)
        CHECK(c.image[y * 8 + x] == static_cast<float>((x + 8 * y + slice[i]) % 64 / 63.0));
    for (int r = 0; r < 4; ++r) CHECK(mask_area(c, r) == (8 - r) * (8 - r));
  }
}

TEST_CASE("lidc pickle: arrays shared through the memo cannot amplify memory", "[data][lidc]") {
  // tools/make_pickle_fixtures.py: 1000 keys → one shared {image, masks} dict: 49 KB that
  // would decode to 82 MB, more than 16 × 49 KB + 64 MiB.
  const std::string path = std::string(AMBISEG_FIXTURE_DIR) + "/pickle/amplified_p4.pkl";
  REQUIRE(fs::file_size(path) < 60000);
  CHECK_THROWS_WITH(load_lidc_pickle(path), Catch::Contains("exceed"));
  pickle_load_options few;
  few.max_cases = 10;  // a bounded number of cases is fine
  const auto cases = load_lidc_pickle(path, few);
  CHECK(cases.size() == 10);
  CHECK(mask_area(cases[9], 0) == 128 * 128);
}

TEST_CASE("lidc split: patient id before the first underscore", "[data][lidc]") {
  CHECK(patient_id("0123_slice4") == "0123");
  CHECK(patient_id("a_b_c") == "a");
  CHECK(patient_id("nounderscore") == "nounderscore");

  patient_split_ids ids;
  ids.test = {"A", "B"};
  ids.validation = {"C"};
  const std::vector<std::string> keys{"A_slice0", "C_slice3", "D_slice1", "A_slice2",
                                      "B_x",      "AB_slice0", "E",       "C_slice0"};
  const auto s = split_by_patient(keys, ids);
  CHECK(s.test == std::vector<std::size_t>{0, 3, 4});
  CHECK(s.validation == std::vector<std::size_t>{1, 7});
  CHECK(s.train == std::vector<std::size_t>{2, 5, 6});

  // The lists shipped in data/lidc-split/ are the shared ones: 175 + 175 disjoint patients.
  const auto shipped = read_split_ids(project_root + "/data/lidc-split");
  CHECK(shipped.test.size() == 175);
  CHECK(shipped.validation.size() == 175);
  if (shared_present(shared_data + "/lidc-split/test_ids.txt")) {
    const auto shared = read_split_ids(shared_data + "/lidc-split");
    CHECK(shipped.test == shared.test);
    CHECK(shipped.validation == shared.validation);
  }
  // A key of a test patient from the real list lands in test.
  const std::string test_patient = *shipped.test.begin();
  const std::vector<std::string> real_keys{test_patient + "_slice7", "notapatient_slice0"};
  const auto rs = split_by_patient(real_keys, shipped);
  CHECK(rs.test == std::vector<std::size_t>{0});
  CHECK(rs.train == std::vector<std::size_t>{1});
}

TEST_CASE("cimd folders: the 28 real LIDC slices", "[data][folders]") {
  // Label areas (grey > 127), computed with PIL (libjpeg) — stb_image agrees on all 112:
  //   /usr/bin/python3 -c "import numpy as np, PIL.Image as I; print([int((np.array(
  //     I.open(f'{D}/{s}/{c}/label{i}_.jpg')) > 127).sum()) for i in range(4)])"
  if (!shared_present(shared_data + "/lidc-cimd-samples")) return;
  const auto training = load_cimd_folder(shared_data + "/lidc-cimd-samples/training");
  const auto testing = load_cimd_folder(shared_data + "/lidc-cimd-samples/testing");
  REQUIRE(training.size() == 19);
  REQUIRE(testing.size() == 9);
  const std::vector<std::vector<std::int64_t>> training_areas{
      {264, 261, 268, 268}, {304, 282, 304, 298}, {0, 0, 0, 5},         {263, 243, 254, 284},
      {293, 275, 292, 301}, {0, 0, 0, 7},         {299, 281, 306, 296}, {229, 208, 206, 207},
      {0, 0, 0, 18},        {36, 42, 52, 74},     {22, 0, 37, 34},      {24, 18, 27, 59},
      {0, 0, 0, 32},        {74, 41, 67, 99},     {218, 206, 231, 230}, {55, 8, 73, 84},
      {132, 68, 138, 119},  {211, 137, 157, 189}, {169, 141, 116, 162}};
  const std::vector<std::vector<std::int64_t>> testing_areas{
      {0, 0, 0, 15},     {69, 61, 77, 64},     {66, 75, 88, 70},     {23, 0, 0, 0},
      {58, 36, 45, 62},  {198, 186, 186, 187}, {148, 119, 105, 102}, {100, 80, 68, 76},
      {16, 11, 8, 9}};
  const char* training_ids[] = {"0",  "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8", "9",
                                "10", "11", "13", "14", "15", "16", "17", "18", "19"};
  for (std::size_t i = 0; i < 19; ++i) {
    const case_ref c = training[i];
    CHECK(c.id == training_ids[i]);
    CHECK(c.image.shape() == shape{1, 128, 128});
    REQUIRE(c.masks.shape() == shape{4, 128, 128});
    for (int k = 0; k < 4; ++k) CHECK(mask_area(c, k) == training_areas[i][static_cast<std::size_t>(k)]);
  }
  for (std::size_t i = 0; i < 9; ++i)
    for (int k = 0; k < 4; ++k)
      CHECK(mask_area(testing[i], k) == testing_areas[i][static_cast<std::size_t>(k)]);
  CHECK(testing[0].id == "12");
  // training/2/image_3.jpg: PIL's pixel sum is 596555; JPEG decoders may differ by ±1 on a
  // few pixels (stb gives 596553), so the mean is compared to 1e-4 of a grey level.
  double sum = 0;
  for (auto v : training[2].image) sum += v;
  CHECK(std::abs(sum * 255.0 - 596555.0) / (128 * 128) < 1e-3);
}

TEST_CASE("lidc crops png: the DeepMind layout on a synthetic tree", "[data][folders]") {
  const fs::path root = fresh_temp_dir("crops");
  auto write = [](const fs::path& p, std::int64_t h, std::int64_t w, auto value) {
    fs::create_directories(p.parent_path());
    tensor<std::uint8_t> t(shape{h, w});
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) t[y * w + x] = static_cast<std::uint8_t>(value(y, x));
    io::write_png(p, t.cview());
  };
  auto image = [](std::int64_t y, std::int64_t x) { return 10 * y + x; };
  // Patient 0001: two slices with 4 labels (0/255 masks); patient 0002: one with 2 (0/1).
  for (const char* stem : {"z-10.5_c0", "z-12.0_c1"}) {
    write(root / "images/LIDC-IDRI-0001" / (std::string(stem) + ".png"), 6, 5, image);
    for (int l = 0; l < 4; ++l)
      write(root / "gt/LIDC-IDRI-0001" / (std::string(stem) + "_l" + std::to_string(l) + ".png"),
            6, 5, [l](std::int64_t y, std::int64_t) { return y < l ? 255 : 0; });
  }
  write(root / "images/LIDC-IDRI-0002/z-3_c0.png", 6, 5, image);
  for (int l = 0; l < 2; ++l)
    write(root / "gt/LIDC-IDRI-0002" / ("z-3_c0_l" + std::to_string(l) + ".png"), 6, 5,
          [l](std::int64_t, std::int64_t x) { return x <= l ? 1 : 0; });

  const auto cases = load_lidc_crops_png(root);
  REQUIRE(cases.size() == 3);
  CHECK(cases[0].id == "LIDC-IDRI-0001_z-10.5_c0");
  CHECK(cases[1].id == "LIDC-IDRI-0001_z-12.0_c1");
  CHECK(cases[2].id == "LIDC-IDRI-0002_z-3_c0");
  CHECK(patient_id(cases[2].id) == "LIDC-IDRI-0002");
  CHECK(cases[0].masks.shape() == shape{4, 6, 5});
  CHECK(cases[2].masks.shape() == shape{2, 6, 5});
  for (int l = 0; l < 4; ++l) CHECK(mask_area(cases[1], l) == 5 * l);
  for (int l = 0; l < 2; ++l) CHECK(mask_area(cases[2], l) == 6 * (l + 1));
  CHECK(cases[2].image[3 * 5 + 4] == 34.0f / 255.0f);

  // A slice without its gt files is an error naming the slice.
  write(root / "images/LIDC-IDRI-0002/z-4_c0.png", 6, 5, image);
  CHECK_THROWS_WITH(load_lidc_crops_png(root), Catch::Contains("z-4_c0_l0.png"));
  fs::remove_all(root);
}

TEST_CASE("image: PNG encode/decode round trip and grey conversion", "[data][image]") {
  const fs::path dir = fresh_temp_dir("image");
  tensor<std::uint8_t> grey(shape{7, 9});
  for (std::int64_t i = 0; i < grey.numel(); ++i) grey[i] = static_cast<std::uint8_t>(i * 37 % 256);
  io::write_png(dir / "grey.png", grey.cview());
  const auto back = io::read_image(dir / "grey.png");
  REQUIRE(back.shape() == shape{7, 9});
  for (std::int64_t i = 0; i < grey.numel(); ++i) CHECK(back[i] == grey[i]);
  // Nothing but the target is left in the directory (the writer is atomic).
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);

  // RGB → grey with stb's weights: (77 R + 150 G + 29 B) >> 8.
  tensor<std::uint8_t> rgb = tensor<std::uint8_t>::zeros(shape{1, 4, 3});
  rgb[0] = 255;                              // red
  rgb[4] = 255;                              // green
  rgb[8] = 255;                              // blue
  rgb[9] = 100, rgb[10] = 150, rgb[11] = 200;
  io::write_png(dir / "rgb.png", rgb.cview());
  const auto g = io::read_image(dir / "rgb.png");
  REQUIRE(g.shape() == shape{1, 4});
  CHECK(int(g[0]) == (77 * 255) >> 8);
  CHECK(int(g[1]) == (150 * 255) >> 8);
  CHECK(int(g[2]) == (29 * 255) >> 8);
  CHECK(int(g[3]) == (77 * 100 + 150 * 150 + 29 * 200) >> 8);

  CHECK_THROWS_AS(io::encode_png(tensor<std::uint8_t>(shape{2, 2, 2}).cview()), shape_error);
  fs::remove_all(dir);
}

TEST_CASE("image: corrupt, truncated and hostile files are format errors", "[data][image]") {
  tensor<std::uint8_t> grey(shape{16, 16});
  for (std::int64_t i = 0; i < grey.numel(); ++i) grey[i] = static_cast<std::uint8_t>(i);
  const auto png = io::encode_png(grey.cview());

  CHECK_THROWS_AS(io::decode_image(std::vector<std::uint8_t>{}), format_error);
  CHECK_THROWS_WITH(io::decode_image(std::vector<std::uint8_t>{'G', 'I', 'F', '8', '9', 'a'}),
                    Catch::Contains("not a PNG or JPEG"));
  // Every proper prefix of a PNG fails (the IEND-less tail included).
  for (std::size_t n = 0; n + 12 < png.size(); ++n)
    CHECK_THROWS_AS(io::decode_image(std::span(png.data(), n)), format_error);
  // IHDR claiming 60000 × 60000: refused from the header, before any allocation.
  auto huge = png;
  const std::uint8_t big[4] = {0x00, 0x00, 0xea, 0x60};
  std::copy(big, big + 4, huge.begin() + 16);
  std::copy(big, big + 4, huge.begin() + 20);
  CHECK_THROWS_AS(io::decode_image(huge), format_error);
  io::image_limits small;
  small.max_pixels = 100;
  CHECK_THROWS_WITH(io::decode_image(png, small), Catch::Contains("exceeds the limit"));

  // Real JPEGs cut inside their headers …
  if (shared_present(shared_data + "/lidc-cimd-samples")) {
    const auto jpeg = file_bytes(shared_data + "/lidc-cimd-samples/training/2/label3_.jpg");
    REQUIRE(jpeg.size() > 200);
    for (std::size_t n : {std::size_t{2}, std::size_t{20}, std::size_t{100}, std::size_t{150}})
      CHECK_THROWS_AS(io::decode_image(std::span(jpeg.data(), n)), format_error);
    // … and inside its entropy-coded data (stb needs the end-of-image marker).
    const auto slice = file_bytes(shared_data + "/lidc-cimd-samples/training/0/image_1.jpg");
    for (double fraction : {0.5, 0.9, 0.99})
      CHECK_THROWS_AS(io::decode_image(std::span(slice.data(), static_cast<std::size_t>(
                                                                   fraction * slice.size()))),
                      format_error);
    CHECK_NOTHROW(io::decode_image(jpeg));
  }
  CHECK_THROWS_AS(io::read_image("/nonexistent/ambiseg.png"), io_error);

  // Inputs the fuzzer (tests/fuzz/run_fuzzers.sh) once crashed on, kept as regressions.
  // stb227_dht_overflow.jpg: a DHT whose counts sum past 256 (stb 2.27 writes out of bounds).
  const fs::path regressions = fs::path(AMBISEG_FIXTURE_DIR) / "../fuzz/regressions/image";
  CHECK_THROWS_WITH(io::read_image(regressions / "stb227_dht_overflow.jpg"),
                    Catch::Contains("Huffman"));
  // stb227_empty_idat_memcpy_null.png: an empty first IDAT (benign memcpy(NULL, p, 0)).
  // Every regression input decodes or is a format_error, nothing else.
  for (const auto& entry : fs::directory_iterator(regressions)) {
    INFO(entry.path().filename().string());
    try {
      const auto image = io::read_image(entry.path());
      CHECK(image.numel() > 0);
    } catch (const format_error&) {
    }
  }
}
