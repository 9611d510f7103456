"""lit_gen.rules and the schema of forwarded arguments: every value checked once, where the config enters."""

from __future__ import annotations

import inspect
from typing import Annotated

import pytest

from lit_gen import registry
from lit_gen.config import validate
from lit_gen.data.base import ImageDataModule
from lit_gen.errors import ConfigError
from lit_gen.models.base import GenerativeModule
from lit_gen.rules import Fraction, PositiveFloat, PositiveInt, Range
from lit_gen.signatures import _own_parameters, coerce, forward, parameters

OPTIMIZER_ARGS = tuple(_own_parameters(GenerativeModule)[0])
LOADER_ARGS = tuple(_own_parameters(ImageDataModule)[0])


def test_a_range_says_what_it_allows_and_refuses_nan():
    assert [str(r) for r in (Range(gt=0), Range(ge=1), Range(ge=0, lt=1), Range(le=5))] == [
        "> 0", ">= 1", "in [0, 1)", "<= 5"]
    rule = Range(ge=0, lt=1)
    assert rule.holds(0.0) and rule.holds(0.999) and not rule.holds(1.0) and not rule.holds(-1e-9)
    assert not rule.holds(float("nan"))


@pytest.mark.parametrize("value, annotation, message", [
    (-1.0, PositiveFloat, "expected a number > 0, got -1.0"),
    (0, PositiveInt, "expected an integer >= 1, got 0"),
    (0, PositiveInt | None, r"expected an integer >= 1 \(or null\), got 0"),
    ([0.9, 1.5], tuple[Fraction, Fraction], r"expected a number in \[0, 1\) at item 1, got \[0.9, 1.5\]"),
    ("x", PositiveInt, "expected an integer, got 'x'"),
])
def test_the_checker_enforces_annotated_rules_naming_the_key(value, annotation, message):
    with pytest.raises(ConfigError, match=r"^model\.x: " + message):
        coerce("model.x", value, annotation)


def test_values_inside_the_rules_pass_converted():
    assert coerce("k", 3, PositiveFloat) == 3.0 and coerce("k", None, PositiveInt | None) is None
    assert coerce("k", [0.5, 0.0], tuple[Fraction, Fraction]) == (0.5, 0.0)
    assert coerce("k", 2, Annotated[int, Range(ge=2)]) == 2


BASE = {"model": {"name": "vae"}, "data": {"name": "digits"}}
FAMILY = {"ddpm": {"name": "ddpm"}, "diffusion": {"name": "diffusion"}, "vqvae": {"name": "vqvae"}, "vqgan": {"name": "vqgan", "image_size": 8},
          "prior": {"name": "prior", "first_stage": "stage1.ckpt"}, "dae": {"name": "dae"}, "ae": {"name": "ae"}}


@pytest.mark.parametrize("family, key, value, message", [
    ("vae", "lr", 0.0, "model.lr: expected a number > 0"),
    ("ddpm", "lr", -1e-4, "model.lr: expected a number > 0"),
    ("vqgan", "weight_decay", -0.1, "model.weight_decay: expected a number >= 0"),
    ("prior", "betas", [0.9, 1.0], r"model.betas: expected a number in \[0, 1\) at item 1"),
    ("ae", "warmup_steps", -1, "model.warmup_steps: expected an integer >= 0"),
    ("vae", "beta", -1.0, "model.beta: expected a number >= 0"),
    ("vae", "gaussian_std", 0.0, r"model.gaussian_std: expected a number > 0 \(or null\)"),
    ("vae", "latent_dim", 0, "model.latent_dim: expected an integer >= 1"),
    ("dae", "noise_level", -0.1, "model.noise_level: expected a number >= 0"),
    ("vqvae", "quantizer", {"name": "vq", "num_codes": 1}, "model.quantizer.num_codes: expected an integer >= 2"),
    ("vqvae", "quantizer", {"name": "vq", "codebook_ema_decay": 1.0},
     r"model.quantizer.codebook_ema_decay: expected a number in \(0, 1\) \(or null\)"),
    ("vqvae", "quantizer", {"name": "vq", "dead_code_steps": 0}, "model.quantizer.dead_code_steps: expected an integer >= 1"),
    ("vqvae", "quantizer", {"name": "fsq", "levels": [8, 1]}, r"model.quantizer.levels: expected an integer >= 2 at item 1"),
    ("vqvae", "quantizer", {"name": "lfq", "temperature": 0.0}, "model.quantizer.temperature: expected a number > 0"),
    ("vqvae", "quantizer", {"name": "rvq"}, "model.quantizer.name: unknown quantizer 'rvq'"),
    ("vqvae", "num_downsamples", -1, "model.num_downsamples: expected an integer >= 0"),
    ("vqgan", "disc_start", -5, "model.disc_start: expected an integer >= 0"),
    ("vqgan", "disc_lr", 0.0, r"model.disc_lr: expected a number > 0 \(or null\)"),
    ("vqgan", "grad_clip", -1.0, r"model.grad_clip: expected a number > 0 \(or null\)"),
    ("vqgan", "quantizer", {"name": "vq", "num_codes": 1}, "model.quantizer.num_codes: expected an integer >= 2"),
    ("diffusion", "ema", {"name": "exponential", "decay": 1.0}, r"model.ema.decay: expected a number in \[0, 1\)"),
    ("ddpm", "label_dropout", 1.0, r"model.label_dropout: expected a number in \[0, 1\)"),
    ("diffusion", "objective", {"name": "edm", "sigma_data": 0.0}, "model.objective.sigma_data: expected a number > 0"),
    ("diffusion", "objective", {"name": "vp", "min_snr_gamma": 0.0},
     r"model.objective.min_snr_gamma: expected a number > 0 \(or null\)"),
    ("ddpm", "dropout", 1.0, r"model.dropout: expected a number in \[0, 1\)"),
    ("ddpm", "channel_mults", [1, 0], "model.channel_mults: expected an integer >= 1 at item 1"),
    ("diffusion", "objective", {"name": "vp", "prediction": "noise"},
     "model.objective.prediction: expected one of 'eps', 'x0', 'v'"),
    ("diffusion", "objective", {"name": "flow", "time_sampling": "beta"}, "model.objective.time_sampling: expected one of"),
    ("diffusion", "objective", {"name": "vp", "timesteps": 0}, "model.objective.timesteps: expected an integer >= 1"),
    ("prior", "n_head", 0, "model.n_head: expected an integer >= 1"),
    ("prior", "dropout", 1.0, r"model.dropout: expected a number in \[0, 1\)"),
])
def test_every_family_rule_is_checked_where_the_config_is_read(family, key, value, message):
    raw = {**BASE, "model": {**FAMILY.get(family, {"name": family}), key: value}}
    with pytest.raises(ConfigError, match=message):
        validate(raw)


@pytest.mark.parametrize("section, key, value, message", [
    ("data", "batch_size", 0, "data.batch_size: expected an integer >= 1"),
    ("data", "num_workers", -1, "data.num_workers: expected an integer >= 0"),
    ("data", "val_fraction", 1.0, r"data.val_fraction: expected a number in \[0, 1\)"),
    ("data", "image_size", 0, r"data.image_size: expected an integer >= 1 \(or null\)"),
    ("run", "max_nonfinite_steps", 0, "run.max_nonfinite_steps: expected an integer >= 1"),
    ("run", "sample_every_n_epochs", -1, "run.sample_every_n_epochs: expected an integer >= 0"),
    ("logger", "log_every_n_steps", 0, "logger.log_every_n_steps: expected an integer >= 1"),
    ("eval", "batch_size", 0, "eval.batch_size: expected an integer >= 1"),
])
def test_the_other_sections_rules_too(section, key, value, message):
    raw = {**BASE, section: {**BASE.get(section, {}), key: value}}
    with pytest.raises(ConfigError, match=message):
        validate(raw)


@pytest.mark.parametrize("name", registry.names("model"))
def test_no_family_restates_the_optimizer_arguments(name):
    cls = registry.resolve("model", name)
    own = _own_parameters(cls)[0]
    assert not set(own) & set(OPTIMIZER_ARGS), f"{cls.__name__} restates {sorted(set(own) & set(OPTIMIZER_ARGS))}"
    schema = parameters(cls)
    assert set(OPTIMIZER_ARGS) <= set(schema)  # still config keys: model.lr, model.betas, ...
    assert schema["lr"].default is not inspect.Parameter.empty, f"{cls.__name__} gives no default learning rate"


@pytest.mark.parametrize("name", registry.names("data"))
def test_no_datamodule_restates_the_loader_arguments(name):
    cls = registry.resolve("data", name)
    own = _own_parameters(cls)[0]
    assert not set(own) & set(LOADER_ARGS), f"{cls.__name__} restates {sorted(set(own) & set(LOADER_ARGS))}"
    assert set(LOADER_ARGS) <= set(parameters(cls))


def test_a_family_default_for_a_forwarded_argument_reaches_the_config_and_the_object():
    vqgan, vqvae = registry.resolve("model", "vqgan"), registry.resolve("model", "vqvae")
    schema = parameters(vqgan)
    assert (schema["lr"].default, schema["betas"].default) == (1e-4, (0.5, 0.9))
    assert schema["quantizer"].default == {"name": "vq", "num_codes": 1024}
    assert parameters(vqvae)["quantizer"].default == "vq"  # VQGAN's defaults stay its own
    assert forward(vqgan, {"quantizer": "fsq"})["quantizer"] == "fsq" and forward(vqgan, {})["lr"] == 1e-4
    cfg = validate({"model": {"name": "vqgan", "image_size": 8, "perceptual_weight": 0.0, "disc_layers": 1},
                    "data": {"name": "digits"}})
    assert (cfg.model["lr"], cfg.model["betas"], cfg.model["quantizer"]["num_codes"]) == (1e-4, (0.5, 0.9), 1024)
    # A section naming the default quantizer keeps the family's other settings, as config sections merge.
    cfg = validate({"model": {"name": "vqgan", "image_size": 8, "perceptual_weight": 0.0, "disc_layers": 1,
                              "quantizer": {"name": "vq", "code_dim": 8}}, "data": {"name": "digits"}})
    assert (cfg.model["quantizer"]["num_codes"], cfg.model["quantizer"]["code_dim"]) == (1024, 8)
    # So does a section that names no quantizer (what model.quantizer.code_dim=8 on the command line gives).
    cfg = validate({"model": {"name": "vqgan", "image_size": 8, "perceptual_weight": 0.0, "disc_layers": 1,
                              "quantizer": {"code_dim": 8}}, "data": {"name": "digits"}})
    assert cfg.model["quantizer"] == {**cfg.model["quantizer"], "name": "vq", "num_codes": 1024, "code_dim": 8}
    model = vqgan(**{k: v for k, v in cfg.model.items() if k != "name"})
    assert (model.lr, model.betas, model.num_codes) == (1e-4, (0.5, 0.9), 1024)
    built_in_python = vqgan(image_size=8, perceptual_weight=0.0, disc_layers=1)  # no config: the same defaults
    assert (built_in_python.lr, built_in_python.betas, built_in_python.num_codes) == (1e-4, (0.5, 0.9), 1024)
    assert built_in_python.hparams["image_size"] == 8


def test_a_default_for_an_argument_nobody_takes_is_a_programming_error():
    class Broken(registry.resolve("model", "vae")):
        ARGUMENT_DEFAULTS = {"learning_rate": 1e-3}

    with pytest.raises(AssertionError, match="learning_rate"):
        parameters(Broken)


def test_a_model_built_in_python_stores_every_argument_even_forwarded_defaults():
    vqgan = registry.resolve("model", "vqgan")
    model = vqgan(image_size=8, perceptual_weight=0.0, disc_layers=1)
    saved = dict(model.hparams)
    assert set(parameters(vqgan)) <= set(saved)
    assert (saved["lr"], saved["betas"], saved["quantizer"]["num_codes"], saved["channels"]) == (1e-4, (0.5, 0.9), 1024, 3)
    again = vqgan(**saved)
    assert dict(again.hparams) == saved


def test_the_autoencoder_families_share_one_codec_signature():
    from lit_gen.models.ae import CodecModule

    codec = set(_own_parameters(CodecModule)[0])
    for name in ("ae", "dae", "vae"):
        cls = registry.resolve("model", name)
        assert not set(_own_parameters(cls)[0]) & codec, cls.__name__
        assert codec <= set(parameters(cls))
    vae = parameters(registry.resolve("model", "vae"))
    assert (vae["hidden_dims"].default, vae["latent_dim"].default, vae["lr"].default) == ((512, 256), 16, 1e-3)
    ae = parameters(registry.resolve("model", "ae"))
    assert (ae["hidden_dims"].default, ae["latent_dim"].default) == ((128, 64, 12), 3)
