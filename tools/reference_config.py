"""The authors' run configuration (their YAML) as an ambiseg trainer_config, checked against
the weights it is to describe. Used by tools/convert_reference_checkpoint.py; plain Python
(PyYAML only to read a file), so tools/test_reference_config.py runs in CI without torch.

The authors' configuration (github.com/JakobLC/AmbDiffSeg, configs/config_default.yaml):
  training  batch_size, lr, lr_warmup_steps, lr_decay_steps, max_iter, clip_grad_norm,
            betas, weight_decay, seed, loss_weights, decouple_loss_weights
  unet      num_channels, channel_mult, num_res_blocks, num_middle_res_blocks,
            attention_resolutions (level indices; negative counts from the lowest level),
            num_heads, num_heads_upsample, final_act, predict, random_crop64, and switches
            for variants ambiseg does not build (use_gen_prob_unet, one_skip_per_reso,
            new_upsample_method, mlp_attn)
  diffusion noise_schedule, input_scale, var_type
  sampling  num_timesteps, sampler_type, clip_denoised, ...
Their image encoding is not a key: it is read from the stem's input channels (3 image
channels: the grey image repeated and ImageNet-normalised; 1: grey).
"""
import copy
import json

# The paper's run: the authors' configs/config_default.yaml, the keys this converter reads.
PAPER_DEFAULTS = {
    "training": {
        "max_iter": 400000, "batch_size": 8, "seed": 0, "lr": 0.0001, "lr_warmup_steps": 1000,
        "lr_decay_steps": 100000, "clip_grad_norm": 1.0, "loss_weights": "SNR_plus1",
        "decouple_loss_weights": False, "betas": [0.9, 0.999], "weight_decay": 0.01,
    },
    "unet": {
        "random_crop64": False, "num_res_blocks": [1, 2, 3, 4], "num_channels": 32, "num_middle_res_blocks": 4,
        "attention_resolutions": [-1], "channel_mult": [1, 1, 2, 4], "num_heads": 4, "num_heads_upsample": -1,
        "final_act": "tanh_if_x", "predict": "x", "use_gen_prob_unet": False, "dropout": 0.0,
        "one_skip_per_reso": False, "new_upsample_method": False, "mlp_attn": False, "identity_init": False,
    },
    "diffusion": {"noise_schedule": "cosine", "input_scale": 0.1, "var_type": "large"},
    "sampling": {"num_timesteps": 10, "sampler_type": "ddpm", "clip_denoised": True},
}

LOSS_WEIGHTS = {"snr_plus1": "snr_plus_one", "snr": "snr", "snr_trunc": "trunc_snr", "trunc_snr": "trunc_snr",
                "uniform": "uniform", "none": "uniform", "sigmoid": "sigmoid"}
SCHEDULES = ("cosine", "linear", "linear_simple", "parabola")
PREDICTIONS = ("x", "eps", "v")
# Switches for network variants ambiseg does not build: their value in the paper's runs.
UNSUPPORTED = {"use_gen_prob_unet": False, "one_skip_per_reso": False, "new_upsample_method": False,
               "mlp_attn": False}


class ConfigError(ValueError):
    pass


def parse_value(text):
    """A command-line override's value as YAML would read it (numbers, booleans, lists)."""
    try:
        return json.loads(text)
    except ValueError:
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def authors_run_config(path=None, overrides=(), embedded=None):
    """The paper's defaults, then the checkpoint's own configuration (embedded, a dict of
    sections) or the YAML file's entries, then `section.key=value` overrides."""
    run = copy.deepcopy(PAPER_DEFAULTS)
    for section, entries in (embedded or {}).items():
        run.setdefault(section, {}).update(entries)
    if path:
        try:
            import yaml
        except ImportError:
            raise ConfigError("reading a YAML configuration needs PyYAML (apt-get install python3-yaml)")
        try:
            with open(path) as f:
                loaded = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read the configuration: {e}")
        if not isinstance(loaded, dict):
            raise ConfigError("the configuration is not a mapping of sections")
        for section, entries in loaded.items():
            if not isinstance(entries, dict):
                raise ConfigError(f"section '{section}' is not a mapping")
            run.setdefault(section, {}).update(entries)
    for item in overrides:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not eq or not dot or not section or not name:
            raise ConfigError(f"override '{item}': expected section.key=value")
        run.setdefault(section, {})[name] = parse_value(value)
    return run


def _get(run, section, key, kind):
    value = run.get(section, {}).get(key)
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          bool: lambda v: isinstance(v, bool),
          str: lambda v: isinstance(v, str),
          list: lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)}
    if not ok[kind](value):
        raise ConfigError(f"{section}.{key} = {value!r} is not {kind.__name__ if kind is not list else 'a list of integers'}")
    return value


def network_of_weights(shapes):
    """What the weights' names and shapes say of the network (the reference's key layout)."""
    def shape(name):
        if name not in shapes:
            raise ConfigError(f"the weights lack '{name}' (not the reference UNet's state_dict?)")
        return shapes[name]
    channels = shape("time_embed.0.weight")[1]
    in_channels = shape("input_blocks.0.0.weight")[1]
    levels, attention, blocks, k = [], set(), [], 1
    current = []
    while f"input_blocks.{k}.0.op.weight" in shapes or f"input_blocks.{k}.0.out_layers.3.weight" in shapes:
        if f"input_blocks.{k}.0.op.weight" in shapes:  # a Downsample closes a level
            levels.append(current)
            current = []
        else:
            current.append(k)
        k += 1
    levels.append(current)
    mult = []
    for level, ks in enumerate(levels):
        if not ks:
            raise ConfigError(f"level {level} of the weights has no ResBlock")
        blocks.append(len(ks))
        width = shape(f"input_blocks.{ks[-1]}.0.out_layers.3.weight")[0]
        if width % channels:
            raise ConfigError(f"level {level} has {width} channels, not a multiple of {channels}")
        mult.append(width // channels)
        if any(f"input_blocks.{i}.1.qkv.weight" in shapes for i in ks):
            attention.add(level)
    middle = sum(1 for name in shapes if name.startswith("middle_block.") and name.endswith(".in_layers.0.weight"))
    return {"model_channels": channels, "in_channels": in_channels, "channel_mult": mult,
            "num_res_blocks": blocks, "num_middle_res_blocks": middle, "attention_levels": sorted(attention)}


def ambiseg_config(run, shapes):
    """(trainer_config as JSON, notes): the run configuration checked against the weights."""
    notes = []
    unet = run.get("unet", {})
    for key, paper in UNSUPPORTED.items():
        if unet.get(key, paper) != paper:
            raise ConfigError(f"unet.{key} = {unet[key]!r}: ambiseg builds the paper's network only ({key} = {paper})")
    weights = network_of_weights(shapes)
    levels = len(weights["channel_mult"])
    attention = set()
    for a in _get(run, "unet", "attention_resolutions", list):
        if not -levels <= a < levels:
            raise ConfigError(f"unet.attention_resolutions names level {a}; the weights have {levels} levels")
        attention.add(a % levels)
    asked = {"model_channels": _get(run, "unet", "num_channels", int),
             "channel_mult": _get(run, "unet", "channel_mult", list),
             "num_res_blocks": _get(run, "unet", "num_res_blocks", list),
             "num_middle_res_blocks": _get(run, "unet", "num_middle_res_blocks", int),
             "attention_levels": sorted(attention)}
    names = {"model_channels": "unet.num_channels", "channel_mult": "unet.channel_mult",
             "num_res_blocks": "unet.num_res_blocks", "num_middle_res_blocks": "unet.num_middle_res_blocks",
             "attention_levels": "unet.attention_resolutions (as levels)"}
    for key, value in asked.items():
        if value != weights[key]:
            raise ConfigError(f"{names[key]} = {value}, but the weights have {weights[key]} "
                              "(configuration and weights disagree)")
    heads = _get(run, "unet", "num_heads", int)
    heads_up = unet.get("num_heads_upsample", -1)
    if heads_up not in (-1, heads):
        raise ConfigError(f"unet.num_heads_upsample = {heads_up}: ambiseg uses unet.num_heads ({heads}) everywhere")
    top = weights["model_channels"] * max(weights["channel_mult"])
    for level in weights["attention_levels"]:
        width = weights["model_channels"] * weights["channel_mult"][level]
        if heads < 1 or width % heads:
            raise ConfigError(f"unet.num_heads = {heads} does not divide the {width} channels of level {level}")
    if top % heads and weights["attention_levels"]:
        raise ConfigError(f"unet.num_heads = {heads} does not divide the middle block's {top} channels")
    prediction = _get(run, "unet", "predict", str)
    if prediction not in PREDICTIONS:
        raise ConfigError(f"unet.predict = {prediction!r}: expected one of {', '.join(PREDICTIONS)}")
    final_act = unet.get("final_act", "tanh_if_x")
    allowed = {"tanh_if_x"} | ({"tanh"} if prediction == "x" else {"none", "identity"})
    if final_act not in allowed:
        raise ConfigError(f"unet.final_act = {final_act!r} with predict = {prediction}: ambiseg puts tanh on "
                          "x-predictions only (tanh_if_x)")
    if float(unet.get("dropout", 0.0)) != 0.0:
        notes.append(f"unet.dropout = {unet['dropout']} is ignored (ambiseg trains without dropout; "
                     "sampling is unaffected)")
    image_channels = weights["in_channels"] - 1
    if image_channels not in (1, 3):
        raise ConfigError(f"the stem takes {weights['in_channels']} channels: expected 1 + 3 (ImageNet-normalised "
                          "grey repeated, the authors' LIDC input) or 1 + 1 (grey)")
    schedule = _get(run, "diffusion", "noise_schedule", str)
    if schedule not in SCHEDULES:
        raise ConfigError(f"diffusion.noise_schedule = {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    input_scale = float(_get(run, "diffusion", "input_scale", float))
    if not 0.0 < input_scale <= 1.0:
        raise ConfigError(f"diffusion.input_scale = {input_scale}: expected a value in (0, 1]")
    weights_name = _get(run, "training", "loss_weights", str)
    weighting = LOSS_WEIGHTS.get(weights_name.lower())
    if weighting is None:
        raise ConfigError(f"training.loss_weights = {weights_name!r}: expected one of {', '.join(sorted(LOSS_WEIGHTS))}")
    if run.get("training", {}).get("decouple_loss_weights", False):
        notes.append("training.decouple_loss_weights is not representable: fine-tuning in ambiseg would use "
                     f"the plain {weighting} weighting (sampling is unaffected)")
    var_type = run.get("diffusion", {}).get("var_type", "large")
    sampler = run.get("sampling", {}).get("sampler_type", "ddpm")
    steps = run.get("sampling", {}).get("num_timesteps", 10)
    hint = f"ddpm_{var_type}" if sampler == "ddpm" and var_type in ("large", "small") else sampler
    notes.append(f"the authors sample with `--sampler {hint} --steps {steps}`"
                 + (" --clip-x0" if run.get("sampling", {}).get("clip_denoised", False) else ""))
    crop64 = unet.get("random_crop64", False)
    total = _get(run, "training", "max_iter", int)
    decay = _get(run, "training", "lr_decay_steps", int)
    warmup = _get(run, "training", "lr_warmup_steps", int)
    betas = run.get("training", {}).get("betas", [0.9, 0.999])
    net = {"model_channels": weights["model_channels"], "channel_mult": weights["channel_mult"],
           "num_res_blocks": weights["num_res_blocks"], "num_middle_res_blocks": weights["num_middle_res_blocks"],
           "attention_levels": weights["attention_levels"], "num_heads": heads,
           "in_channels": weights["in_channels"], "out_channels": 1, "final_tanh": prediction == "x",
           "max_period": 10.0, "norm_eps": 1e-5}
    policy = {"schedule": schedule, "input_scale": input_scale, "prediction": prediction, "weighting": weighting,
              "sigmoid_bias": 0.0, "stratified_t": True}
    config = {
        "model": {"kind": "diffusion", "config": {"net": net, "policy": policy}},
        "adamw": {"lr": float(_get(run, "training", "lr", float)), "beta1": float(betas[0]), "beta2": float(betas[1]),
                  "eps": 1e-8, "weight_decay": float(_get(run, "training", "weight_decay", float))},
        "lr": {"base_lr": float(_get(run, "training", "lr", float)), "warmup_steps": warmup, "total_steps": total,
               "decay_steps": decay},
        "clip_norm": float(_get(run, "training", "clip_grad_norm", float)),
        "ema_decay": None,
        "batch_size": _get(run, "training", "batch_size", int),
        "crop_size": 64 if crop64 else 128,
        "crop": "random" if crop64 else "central",
        "encoding": "imagenet_rgb" if image_channels == 3 else "grey",
        "seed": _get(run, "training", "seed", int),
    }
    return config, notes
