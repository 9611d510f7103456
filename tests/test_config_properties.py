"""Properties of the config boundary, over generated overrides in the three forms W&B passes:

- a valid override arrives in the config as exactly the value set, with the annotated type;
- NaN or an infinity for any numeric setting (or inside a list or mapping) is refused naming the key;
- any override at all gives a LitGenError or a config that holds only finite numbers and validates
  again, unchanged, from its own YAML (what the run folder stores and a resume reads).
"""

from __future__ import annotations

import math

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lit_gen.config import load_config, validate
from lit_gen.errors import ConfigError, LitGenError

CONFIG = "configs/vae_digits.yaml"
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def forms(key: str, text: str) -> st.SearchStrategy[list[str]]:
    """The override as ${args_no_hyphens}, ${args} or ${args_no_equals} writes it."""
    return st.sampled_from([[f"{key}={text}"], [f"--{key}={text}"], [f"--{key}", text]])


def section_value(cfg, key: str):
    section, _, name = key.partition(".")
    if not name:
        return getattr(cfg, section)
    part = getattr(cfg, section)
    return part[name] if isinstance(part, dict) else getattr(part, name)


FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
VALID = {
    "model.beta": FINITE_FLOATS.map(abs),
    "model.lr": st.floats(1e-8, 1.0),
    "model.latent_dim": st.integers(1, 512),
    "data.batch_size": st.integers(1, 4096),
    "data.val_fraction": st.floats(0.0, 0.99),
    "trainer.max_epochs": st.integers(1, 10**6),
    "trainer.gradient_clip_val": st.floats(0.0, 1e6),
    "run.num_samples": st.integers(1, 1024),
    "eval.num_samples": st.integers(2, 10**6),
    "seed": st.integers(0, 2**31),
}


@PROPERTY
@given(st.sampled_from(sorted(VALID)).flatmap(lambda key: st.tuples(st.just(key), VALID[key])).flatmap(
    lambda kv: st.tuples(st.just(kv), forms(kv[0], repr(kv[1])))))
def test_a_valid_override_arrives_as_the_value_set(case):
    (key, value), args = case
    got = section_value(load_config(CONFIG, args), key)
    assert got == value and type(got) is type(value), (args, got)


NUMERIC_KEYS = sorted(VALID) + ["model.gaussian_std", "run.max_nonfinite_steps", "eval.batch_size",
                                "trainer.limit_train_batches", "logger.log_every_n_steps"]
NON_FINITE = st.sampled_from(["nan", "inf", "-inf", "1e999", "-1e999", "NaN", "Infinity"])


@PROPERTY
@given(st.sampled_from(NUMERIC_KEYS), NON_FINITE, st.data())
def test_a_non_finite_number_is_refused_naming_the_key(key, text, data):
    args = data.draw(forms(key, text))
    try:
        load_config(CONFIG, args)
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"{args} was accepted")
    assert message.startswith(f"{key}:"), message
    assert repr(float(text)) in message, message


@PROPERTY
@given(st.sampled_from([("model.betas", "[0.9, {}]", "model.betas[1]"),
                        ("model.hidden_dims", "[8, {}]", "model.hidden_dims[1]"),
                        ("run.sample_options", "{{'eta': {}}}", "run.sample_options.eta"),
                        ("eval.sample_options", "{{'steps': 10, 'guidance': {}}}", "eval.sample_options.guidance")]),
       st.sampled_from([".nan", ".inf", "-.inf", "1e999"]), st.data())
def test_a_non_finite_number_inside_a_list_or_mapping_is_refused_naming_where(case, text, data):
    key, template, where = case
    args = data.draw(forms(key, template.format(text)))
    try:
        load_config(CONFIG, args)
    except ConfigError as exc:
        assert str(exc).startswith(f"{where}: expected a finite number"), str(exc)
    else:
        raise AssertionError(f"{args} was accepted")


KEYS = st.sampled_from([
    "model.beta", "model.latent_dim", "model.hidden_dims", "model.likelihood", "model.name", "model", "model.betas",
    "data.batch_size", "data.name", "data.image_size", "trainer.max_epochs", "trainer.precision",
    "run.num_samples", "run.sample_options", "logger.mode", "seed", "name", "model.nope", "x.y.z", "",
])
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["[1, 2]", "{'beta': 0.5}", "{'beta': [", "null", "True", "[a", "{}", "()", "'quoted'",
                     "[0.5, .nan]", "{'beta': .inf}", "{'eta': -.inf}"]),
)
OVERRIDE = st.one_of(
    st.tuples(KEYS, VALUES).map(lambda kv: [f"{kv[0]}={kv[1]}"]),
    st.tuples(KEYS, VALUES).map(lambda kv: [f"--{kv[0]}={kv[1]}"]),
    st.tuples(KEYS, VALUES).map(lambda kv: [f"--{kv[0]}", kv[1]]),
    st.text(max_size=20).map(lambda s: [s]),
)


def non_finite_numbers(value, where=""):
    if isinstance(value, float) and not math.isfinite(value):
        yield where
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite_numbers(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from non_finite_numbers(item, f"{where}[{i}]")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDE, max_size=3))
@example([["model.beta=nan"]])
@example([["--model", "{'beta': .inf}"]])
def test_any_overrides_give_a_lit_gen_error_or_a_config_that_validates_again(groups):
    args = [arg for group in groups for arg in group]
    try:
        cfg = load_config(CONFIG, args)
    except LitGenError:
        return
    saved = cfg.to_dict()
    assert not list(non_finite_numbers(saved)), (args, list(non_finite_numbers(saved)))
    again = validate(yaml.safe_load(cfg.to_yaml()), source=CONFIG)
    assert again.to_dict() == saved
