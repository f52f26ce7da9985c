#!/usr/bin/python3
"""Tests of tools/reference_config.py (CTest reference_config; plain Python, no torch):
the authors' run configuration becomes ambiseg's trainer_config, checked against weights.

The weights are given as name → shape, built here from the reference's key layout for a
network described independently (levels, blocks, attention), so that the inference is
checked against a construction rather than against itself.
"""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_config import ConfigError, ambiseg_config, authors_run_config  # noqa: E402


def reference_shapes(channels=32, mult=(1, 1, 2, 4), blocks=(1, 2, 3, 4), middle=4, attention=(3,), in_ch=4):
    """The reference UNet's state_dict names and shapes (the parts the converter reads)."""
    s = {"time_embed.0.weight": [4 * channels, channels], "input_blocks.0.0.weight": [channels, in_ch, 3, 3]}
    k, ch = 1, channels * mult[0]
    for level, m in enumerate(mult):
        for _ in range(blocks[level]):
            ch = channels * m
            s[f"input_blocks.{k}.0.out_layers.3.weight"] = [ch, ch, 3, 3]
            if level in attention:
                s[f"input_blocks.{k}.1.qkv.weight"] = [3 * ch, ch, 1]
            k += 1
        if level != len(mult) - 1:
            s[f"input_blocks.{k}.0.op.weight"] = [ch, ch, 3, 3]
            k += 1
    for i in range(middle):
        s[f"middle_block.{2 * i}.in_layers.0.weight"] = [ch]
    return s


class PaperDefaults(unittest.TestCase):
    def test_the_paper_run(self):
        config, notes = ambiseg_config(authors_run_config(), reference_shapes())
        net = config["model"]["config"]["net"]
        self.assertEqual(net["model_channels"], 32)
        self.assertEqual(net["channel_mult"], [1, 1, 2, 4])
        self.assertEqual(net["num_res_blocks"], [1, 2, 3, 4])
        self.assertEqual(net["num_middle_res_blocks"], 4)
        self.assertEqual(net["attention_levels"], [3])  # attention_resolutions [-1]
        self.assertEqual(net["num_heads"], 4)
        self.assertTrue(net["final_tanh"])
        policy = config["model"]["config"]["policy"]
        self.assertEqual((policy["schedule"], policy["input_scale"], policy["prediction"], policy["weighting"]),
                         ("cosine", 0.1, "x", "snr_plus_one"))
        self.assertEqual(config["encoding"], "imagenet_rgb")
        self.assertEqual((config["crop_size"], config["crop"]), (128, "central"))
        self.assertEqual(config["lr"], {"base_lr": 1e-4, "warmup_steps": 1000, "total_steps": 400000,
                                        "decay_steps": 100000})
        self.assertEqual(config["batch_size"], 8)
        self.assertTrue(any("--sampler ddpm_large --steps 10" in n for n in notes))

    def test_crop64_and_grey(self):
        run = authors_run_config(overrides=["unet.random_crop64=true"])
        config, _ = ambiseg_config(run, reference_shapes(in_ch=2))
        self.assertEqual((config["crop_size"], config["crop"], config["encoding"]), (64, "random", "grey"))


class Overrides(unittest.TestCase):
    def test_values_parse_as_on_the_authors_command_line(self):
        run = authors_run_config(overrides=["training.lr=1e-3", "unet.predict=eps", "unet.channel_mult=[1,2]",
                                            "unet.use_gen_prob_unet=False"])
        self.assertEqual(run["training"]["lr"], 1e-3)
        self.assertEqual(run["unet"]["predict"], "eps")
        self.assertEqual(run["unet"]["channel_mult"], [1, 2])
        self.assertIs(run["unet"]["use_gen_prob_unet"], False)

    def test_a_malformed_override_is_refused(self):
        for bad in ["lr=1", "training.lr", ".lr=1"]:
            with self.assertRaises(ConfigError):
                authors_run_config(overrides=[bad])

    def test_the_checkpoints_own_configuration(self):
        run = authors_run_config(embedded={"unet": {"num_heads": 1}, "diffusion": {"input_scale": 0.2}})
        config, _ = ambiseg_config(run, reference_shapes())
        self.assertEqual(config["model"]["config"]["net"]["num_heads"], 1)
        self.assertEqual(config["model"]["config"]["policy"]["input_scale"], 0.2)

    def test_a_yaml_file(self):
        try:
            import yaml  # noqa: F401
        except ImportError:
            self.skipTest("PyYAML not installed")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("training:\n  batch_size: 4\nunet:\n  num_heads: 2\n")
        try:
            run = authors_run_config(f.name, ["training.seed=3"])
        finally:
            os.remove(f.name)
        self.assertEqual((run["training"]["batch_size"], run["unet"]["num_heads"], run["training"]["seed"]), (4, 2, 3))
        self.assertEqual(run["training"]["lr"], 1e-4)  # the rest from the paper's defaults


class Disagreements(unittest.TestCase):
    def refused(self, run, shapes, words):
        with self.assertRaises(ConfigError) as e:
            ambiseg_config(run, shapes)
        self.assertIn(words, str(e.exception))

    def test_configuration_and_weights_must_agree(self):
        self.refused(authors_run_config(overrides=["unet.num_res_blocks=[1,2,3,3]"]), reference_shapes(),
                     "unet.num_res_blocks = [1, 2, 3, 3], but the weights have [1, 2, 3, 4]")
        self.refused(authors_run_config(overrides=["unet.num_channels=64"]), reference_shapes(), "unet.num_channels")
        self.refused(authors_run_config(overrides=["unet.attention_resolutions=[-2]"]), reference_shapes(),
                     "unet.attention_resolutions")
        self.refused(authors_run_config(), reference_shapes(middle=2), "unet.num_middle_res_blocks")
        self.refused(authors_run_config(overrides=["unet.attention_resolutions=[7]"]), reference_shapes(),
                     "names level 7")

    def test_what_ambiseg_does_not_build_is_refused(self):
        self.refused(authors_run_config(overrides=["unet.use_gen_prob_unet=true"]), reference_shapes(),
                     "unet.use_gen_prob_unet")
        self.refused(authors_run_config(overrides=["unet.num_heads_upsample=2"]), reference_shapes(),
                     "num_heads_upsample")
        self.refused(authors_run_config(overrides=["unet.num_heads=3"]), reference_shapes(), "does not divide")
        self.refused(authors_run_config(overrides=["diffusion.noise_schedule=sqrt"]), reference_shapes(),
                     "noise_schedule")
        self.refused(authors_run_config(overrides=["training.loss_weights=mystery"]), reference_shapes(),
                     "loss_weights")
        self.refused(authors_run_config(), reference_shapes(in_ch=5), "the stem takes 5 channels")
        self.refused(authors_run_config(), {"input_blocks.0.0.weight": [32, 4, 3, 3]}, "time_embed.0.weight")

    def test_wrong_types_are_named(self):
        self.refused(authors_run_config(overrides=["training.batch_size=eight"]), reference_shapes(),
                     "training.batch_size")


if __name__ == "__main__":
    unittest.main()
