"""Tests of the Python package (pytest; `scripts/test.sh` runs them after the C++ suite).

Every function of the API, errors as Python exceptions carrying the C++ message, the
zero-copy array path, the GIL released while C++ computes, and results checked against
independent values: the reference checkpoint's PyTorch DDIM samples, closed forms of the
schedule, and the `ambiseg` tool itself (AMBISEG_CLI: the same seed gives the same masks).
"""
import json
import math
import os
import pickle
import subprocess
import threading
import time

import numpy as np
import pytest

import ambiseg

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
REFERENCE = os.path.join(FIXTURES, "reference_checkpoint")


@pytest.fixture(scope="module")
def reference_model():
    model = ambiseg.load(os.path.join(REFERENCE, "converted.safetensors"))
    yield model
    model.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 4 steps on synthetic lesions (32×32)."""
    out = tmp_path_factory.mktemp("trained")
    ambiseg.train("synthetic", out, synthetic_images=16, crop=32, config="tiny", steps=4, batch=2, seed=3)
    return os.path.join(out, "checkpoint.safetensors")


# --- names, policies ---------------------------------------------------------------------

def test_names():
    assert ambiseg.__version__.count(".") == 2
    assert {"ddim", "ddpm", "ddpm_large", "dpmpp_2m", "unipc"} <= set(ambiseg.samplers())
    assert {"diffusion", "prob_unet_aa", "phiseg"} <= set(ambiseg.models())
    assert isinstance(ambiseg.with_cuda, bool)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_policy_against_the_closed_form():
    # SPEC §2: cosine γ, input scale b, then clipping to λ ∈ [−20, 20], written out here.
    b = 0.1

    def scaled(t):
        g = math.cos(math.pi * t / 2) ** 2
        return b * b * g / ((b * b - 1) * g + 1)

    k = (sigmoid(20) - sigmoid(-20)) / (scaled(0) - scaled(1))
    k0 = sigmoid(-20) - scaled(1) * k
    p = ambiseg.Policy("cosine", input_scale=b, prediction="x", weighting="snr_plus_one")
    for t in (0.0, 0.1, 0.5, 0.9, 1.0):
        gamma = scaled(t) * k + k0
        assert p.alpha(t) == pytest.approx(math.sqrt(gamma), rel=1e-9, abs=1e-12)
        assert p.sigma(t) == pytest.approx(math.sqrt(1 - gamma), rel=1e-9, abs=1e-12)
        if 0 < t < 1:  # at the ends 1 − γ cancels in double; λ is ±20 there by definition
            assert p.log_snr(t) == pytest.approx(math.log(gamma / (1 - gamma)), rel=1e-9)
            assert p.weight(t) == pytest.approx(gamma / (1 - gamma) + 1, rel=1e-9)  # SNR + 1
    assert p.log_snr(0.0) == pytest.approx(20.0, abs=1e-9)
    assert p.log_snr(1.0) == pytest.approx(-20.0, abs=1e-9)
    assert p.sampling_times(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert "cosine" in repr(p)
    with pytest.raises(ValueError, match="schedule"):
        ambiseg.Policy("sqrt")
    with pytest.raises(ValueError, match=r"t = 1.5"):
        p.alpha(1.5)


# --- data --------------------------------------------------------------------------------

def test_synthetic_lesions():
    cases = ambiseg.data.synthetic_lesions(3, size=32, seed=1)
    assert len(cases) == 3
    c = cases[0]
    assert c.image.shape == (32, 32) and c.image.dtype == np.float32
    assert c.masks.shape == (4, 32, 32) and c.masks.dtype == np.uint8
    assert set(np.unique(c.masks)) <= {0, 1}
    again = ambiseg.data.synthetic_lesions(1, size=32, seed=1, first=2)
    np.testing.assert_array_equal(again[0].image, cases[2].image)  # the generator's case 2
    with pytest.raises(ValueError, match="size"):
        ambiseg.data.synthetic_lesions(1, size=8)


def test_lidc_pickle():
    cases = ambiseg.data.load_lidc_pickle(os.path.join(FIXTURES, "pickle", "lidc_mini_p4.pkl"))
    assert len(cases) > 0
    assert cases[0].image.ndim == 2 and cases[0].masks.ndim == 3
    assert "Case(" in repr(cases[0])


def test_qubiq_pickle_and_cimd_folder():
    shared = os.path.join(ROOT, "..", "shared", "data")
    qubiq = os.path.join(shared, "qubiq-brain-growth", "brain_growth_alpha.pkl")
    cimd = os.path.join(shared, "lidc-cimd-samples", "training")
    if not os.path.exists(qubiq) or not os.path.isdir(cimd):
        pytest.skip("shared/data is not beside this checkout")
    cases = ambiseg.data.load_qubiq_pickle(qubiq)
    assert len(cases) == 39 and cases[0].masks.shape == (7, 128, 128)
    folder = ambiseg.data.load_cimd_folder(cimd)
    assert len(folder) > 0 and folder[0].masks.ndim == 3


def test_hostile_and_corrupt_files_raise_value_error_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="refuse_os_system.pkl"):
        ambiseg.data.load_lidc_pickle(os.path.join(FIXTURES, "pickle", "refuse_os_system.pkl"))
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="corrupt.pkl"):
        ambiseg.data.load_lidc_pickle(corrupt)
    with pytest.raises(OSError, match="missing.pkl"):
        ambiseg.data.load_lidc_pickle(tmp_path / "missing.pkl")
    with pytest.raises(ValueError):
        ambiseg.load(corrupt)


# --- sampling ----------------------------------------------------------------------------

def test_reference_checkpoint_samples_as_pytorch(reference_model):
    m = reference_model
    assert m.kind == "diffusion" and m.step == 1500 and m.image_channels == 3
    assert m.config["encoding"] == "imagenet_rgb"
    grey = np.load(os.path.join(REFERENCE, "grey.npy"))
    noise = np.load(os.path.join(REFERENCE, "noise.npy"))
    expected = np.load(os.path.join(REFERENCE, "ddim_x0.npy"))
    masks, x0 = m.sample(grey, n=3, steps=4, sampler="ddim", init_noise=noise)
    assert masks.shape == x0.shape == (2, 3, 16, 16)
    assert masks.dtype == np.uint8 and x0.dtype == np.float32
    assert np.abs(x0 - expected).max() < 5e-5
    np.testing.assert_array_equal(masks, (x0 > 0).astype(np.uint8))
    # Encoded images give the same; so does a float64, non-contiguous copy (converted).
    encoded = np.load(os.path.join(REFERENCE, "image.npy"))
    np.testing.assert_allclose(m.encode(grey), encoded, atol=1e-6)
    _, x0_encoded = m.sample(encoded, n=3, steps=4, sampler="ddim", init_noise=noise)
    assert np.abs(x0_encoded - expected).max() < 5e-5
    strided = np.asfortranarray(grey.astype(np.float64))
    _, x0_strided = m.sample(strided, n=3, steps=4, sampler="ddim", init_noise=noise)
    np.testing.assert_array_equal(x0_strided, x0)


def test_sampling_is_a_function_of_the_seed(trained):
    with ambiseg.load(trained) as m:
        grey = np.stack([c.image for c in ambiseg.data.synthetic_lesions(2, size=32, seed=9)])
        a = m.sample(grey, n=3, steps=2, seed=4)
        b = m.sample(grey, n=3, steps=2, seed=4)
        c = m.sample(grey, n=3, steps=2, seed=5)
        np.testing.assert_array_equal(a.x0, b.x0)
        assert not np.array_equal(a.x0, c.x0)
        for sampler in ambiseg.samplers():
            assert m.sample(grey[:1], n=2, steps=2, sampler=sampler).masks.shape == (1, 2, 32, 32)


def test_same_seed_same_masks_as_the_tool(trained, tmp_path):
    grey = ambiseg.data.synthetic_lesions(1, size=32, seed=9)[0].image
    np.save(tmp_path / "grey.npy", grey)
    args = ["sample", "--ckpt", trained, "--image", str(tmp_path / "grey.npy"), "-n", "4", "--steps", "3",
            "--seed", "5", "--out", str(tmp_path / "cli")]
    cli = os.environ.get("AMBISEG_CLI")
    if cli:  # the installed tool, a separate program
        subprocess.run([cli] + args, check=True, capture_output=True)
    else:  # the same tool's code in-process
        assert ambiseg._ambiseg.run_cli(args).code == 0
    from_tool = np.load(tmp_path / "cli" / "masks.npy")
    with ambiseg.load(trained) as m:
        masks, _ = m.sample(grey, n=4, steps=3, seed=5)
    np.testing.assert_array_equal(masks, from_tool)


def test_bad_inputs_raise_with_the_cpp_message(reference_model):
    m = reference_model
    grey = np.load(os.path.join(REFERENCE, "grey.npy"))
    nan = grey.copy()
    nan[1, 3, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        m.sample(nan, n=2, steps=2)
    with pytest.raises(ValueError, match="channels"):
        m.sample(np.zeros((1, 5, 16, 16), np.float32), n=2, steps=2)
    with pytest.raises(ValueError, match="multiples of 2"):
        m.sample(np.zeros((1, 15, 15), np.float32), n=2, steps=2)
    with pytest.raises(ValueError, match="init_noise"):
        m.sample(grey, n=3, steps=2, init_noise=np.zeros((2, 2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="sampler"):
        m.sample(grey, n=2, steps=2, sampler="euler")
    with pytest.raises(ValueError, match="steps"):
        m.sample(grey, n=2, steps=0)
    with pytest.raises(TypeError, match="dtype"):
        m.sample(np.array([["a"]]), n=2)
    with pytest.raises(TypeError, match="expected a numpy array"):
        m.sample(object(), n=2)
    with pytest.raises(ValueError, match="seed"):
        m.sample(grey, n=2, steps=2, seed=-1)


def test_a_closed_model_refuses_to_sample(trained):
    m = ambiseg.load(trained)
    m.close()
    assert m.closed and "closed" in repr(m)
    with pytest.raises(ValueError, match="closed"):
        m.sample(np.zeros((1, 32, 32), np.float32), n=1, steps=1)


def test_device_cuda_without_cuda_is_refused(trained):
    if ambiseg.with_cuda:
        pytest.skip("this build has CUDA")
    with pytest.raises(ValueError, match="without CUDA"):
        ambiseg.load(trained, device="cuda")


def test_the_gil_is_released_while_sampling(reference_model):
    grey = np.repeat(np.load(os.path.join(REFERENCE, "grey.npy")), 4, axis=0)
    done = threading.Event()

    def work():
        reference_model.sample(grey, n=8, steps=4)
        done.set()

    thread = threading.Thread(target=work)
    ticks = 0
    thread.start()
    start = time.perf_counter()
    while not done.is_set():
        ticks += 1
    thread.join()
    elapsed = time.perf_counter() - start
    # Python kept running beside the C++ call: with the GIL held it would not tick at all
    # until the call returned.
    assert elapsed > 0.02 and ticks > 1000


# --- arrays --------------------------------------------------------------------------------

class DLPackOnly:
    """A tensor of another framework, as ambiseg sees it: only the DLPack protocol."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, *args, **kwargs):
        return self._array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_arrays_are_read_in_place_when_their_layout_allows():
    from ambiseg._arrays import as_array
    a = np.random.default_rng(0).random((2, 3, 4), dtype=np.float32)
    assert np.shares_memory(as_array(a, np.float32, "x"), a)
    assert np.shares_memory(as_array(DLPackOnly(a), np.float32, "x"), a)
    assert not np.shares_memory(as_array(a.astype(np.float64), np.float32, "x"), a)
    assert as_array(a[:, ::2], np.float32, "x").flags.c_contiguous


def test_a_pytorch_tensor_without_a_copy(reference_model):
    torch = pytest.importorskip("torch")
    from ambiseg._arrays import as_array
    t = torch.rand(2, 16, 16)
    assert np.shares_memory(as_array(t, np.float32, "x"), t.numpy())
    assert reference_model.sample(t, n=2, steps=2).masks.shape == (2, 2, 16, 16)
    with pytest.raises(TypeError, match="detach"):
        as_array(torch.rand(2, 2, requires_grad=True), np.float32, "x")


# --- evaluation ----------------------------------------------------------------------------

def test_evaluate_has_the_tools_keys_and_values(tmp_path):
    cases = ambiseg.data.synthetic_lesions(3, size=32, seed=2)
    annotations = np.stack([c.masks for c in cases])                       # [3, 4, 32, 32]
    samples = np.roll(annotations, 1, axis=1).astype(np.float32)           # the same sets, reordered
    r = ambiseg.evaluate(samples, annotations, pp=0.5)
    assert r["results"][0]["raw"]["ged"] == pytest.approx(0.0, abs=1e-12)  # equal sets: GED² = 0
    np.save(tmp_path / "s.npy", samples)
    np.save(tmp_path / "a.npy", annotations)
    tool = ambiseg._ambiseg  # the ambiseg-eval tool's JSON, when built beside
    eval_bin = os.environ.get("AMBISEG_EVAL")
    if eval_bin:
        printed = subprocess.run([eval_bin, "--samples", str(tmp_path / "s.npy"), "--annotations",
                                  str(tmp_path / "a.npy"), "--pp", "0.5", "--json"], check=True,
                                 capture_output=True, text=True).stdout
        from_tool = json.loads(printed)
        assert set(from_tool) == set(r)
        for mine, theirs in zip(r["results"], from_tool["results"]):
            mine.pop("method"), theirs.pop("method")  # the tool names the file
            assert mine == theirs
    assert tool is not None
    paper = ambiseg.evaluate(samples, annotations, protocol="paper")
    assert paper["results"][0]["raw"]["ged"] == pytest.approx(0.0, abs=1e-12)
    one = ambiseg.evaluate(samples[0], annotations[0])                      # [n, H, W]: one image
    assert one["results"][0]["images"] == 1


def test_evaluate_refuses_bad_input():
    a = np.zeros((2, 4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="differ"):
        ambiseg.evaluate(np.zeros((3, 4, 8, 8), np.uint8), a)
    bad = np.zeros((2, 4, 8, 8), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ambiseg.evaluate(bad, a)
    with pytest.raises(ValueError, match="pp"):
        ambiseg.evaluate(a, a, pp=1.5)
    with pytest.raises(ValueError, match="protocol"):
        ambiseg.evaluate(a, a, protocol="mine")
    with pytest.raises(ValueError, match="expected"):
        ambiseg.evaluate(np.zeros((8, 8)), a)


# --- training --------------------------------------------------------------------------------

def tiny(out, **more):
    return dict(data="synthetic", out=out, synthetic_images=16, crop=32, config="tiny", batch=2, seed=3, **more)


def test_train_reports_progress_and_returns_the_summary(tmp_path):
    seen = []
    summary = ambiseg.train(**tiny(tmp_path / "run", steps=5), progress=lambda p: seen.append(p))
    assert [p["step"] for p in seen] == [1, 2, 3, 4, 5]
    assert all(p["total_steps"] == 5 and math.isfinite(p["loss"]) for p in seen)
    assert summary["steps_done"] == 5 and summary["stopped_by"] == "steps"
    assert os.path.exists(tmp_path / "run" / "checkpoint.safetensors")


def test_a_progress_callback_stops_the_run_checkpointed(tmp_path):
    summary = ambiseg.train(**tiny(tmp_path / "run", steps=50), progress=lambda p: p["step"] < 3)
    assert summary["steps_done"] == 3 and summary["stopped_by"] == "interrupted"
    assert ambiseg.load(tmp_path / "run" / "checkpoint.safetensors").step == 3
    # resume=True continues to the planned end.
    assert ambiseg.train(**tiny(tmp_path / "run", steps=50), resume=True)["steps_done"] == 50


def test_ctrl_c_stops_the_run_and_keeps_its_checkpoint(tmp_path):
    def interrupt(p):
        if p["step"] == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises inside the callback

    with pytest.raises(KeyboardInterrupt, match="checkpoint"):
        ambiseg.train(**tiny(tmp_path / "run", steps=50), progress=interrupt)
    assert ambiseg.load(tmp_path / "run" / "checkpoint.safetensors").step == 2


def test_a_callbacks_exception_propagates(tmp_path):
    def broken(p):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        ambiseg.train(**tiny(tmp_path / "run", steps=5), progress=broken)


def test_train_errors_are_python_exceptions(tmp_path):
    with pytest.raises(ValueError, match="--frobnicate"):
        ambiseg.train(**tiny(tmp_path / "a", steps=2), frobnicate=3)
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(pickle.dumps({"x": 1})[:5])
    with pytest.raises(ValueError, match="corrupt.pkl"):
        ambiseg.train(corrupt, tmp_path / "b", steps=2)
    with pytest.raises(OSError, match="nothing.pkl"):
        ambiseg.train(tmp_path / "nothing.pkl", tmp_path / "c", steps=2)


def test_a_real_ctrl_c_stops_training_with_its_checkpoint(tmp_path):
    # SIGINT to a Python process training: the step in flight finishes, its checkpoint is
    # written, and KeyboardInterrupt reaches the script.
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, ambiseg\n"
        "def progress(p):\n"
        "    if p['step'] == 2:\n"
        "        print('ready', flush=True)\n"
        "try:\n"
        f"    ambiseg.train('synthetic', r'{tmp_path / 'run'}', synthetic_images=16, crop=32, config='tiny',\n"
        "                  batch=2, steps=100000, progress=progress)\n"
        "except KeyboardInterrupt as e:\n"
        "    print('interrupted:', e, flush=True)\n"
        "    sys.exit(3)\n")
    proc = subprocess.Popen([os.sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(2)  # SIGINT, what Ctrl-C sends
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    assert "checkpoint" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_by"] == "interrupted"
    assert ambiseg.load(tmp_path / "run" / "checkpoint.safetensors").step == summary["steps_done"] >= 2


def test_distill_from_python(trained, tmp_path):
    seen = []
    summary = ambiseg.distill(tmp_path / "student", ckpt=trained, data="synthetic", synthetic_images=16, from_=4,
                              to=1, steps=2, batch=2, progress=lambda p: seen.append(p["step"]))
    assert [r["steps"] for r in summary["rounds"]] == [2, 1]
    assert seen == [1, 2, 1, 2]
    with ambiseg.load(summary["student"]) as student:
        assert student.kind == "distilled_diffusion"
        assert student.sample(np.zeros((1, 32, 32), np.float32), n=2).masks.shape == (1, 2, 32, 32)
