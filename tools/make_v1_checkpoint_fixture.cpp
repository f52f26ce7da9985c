// Writes a training checkpoint with the code at commit 9109546 (the format before the model registry).
#include <cstdio>
#include "ambiseg/data/synthetic.hpp"
#include "ambiseg/train/trainer.hpp"
using namespace ambiseg;
using namespace ambiseg::train;
int main(int argc, char** argv) {
  trainer_config c;
  c.net = nn::unet_config::tiny();
  c.batch_size = 2;
  c.crop_size = 16;
  c.seed = 5;
  c.adamw.lr = 1e-3;
  c.lr = {1e-3, 2, 50, 10};
  c.ema_decay = 0.9;
  const auto data = data::synthetic_lesions({.size = 16, .seed = 11}).make_cases(0, 4);
  trainer<data::case_set> t(c, data);
  for (int i = 0; i < 3; ++i) { auto r = t.step(); std::printf("step %lld loss %.9g norm %.9g\n", (long long)r.step, r.loss, r.grad_norm); }
  t.save(argv[1]);
  // the next step's loss, for the resume test
  auto r = t.step(); std::printf("next loss %.17g norm %.17g\n", r.loss, r.grad_norm);
}
