"""lit_gen.config: YAML, extends, the three override forms, and every error path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lit_gen.config import load_config, parse_value, split_overrides
from lit_gen.errors import ConfigError


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def vae_config(tmp_path):
    write(tmp_path / "base.yaml", """
        seed: 3
        trainer: {max_epochs: 2, accelerator: cpu}
    """)
    return write(tmp_path / "vae.yaml", """
        extends: base.yaml
        name: vae_test
        model: {name: vae, latent_dim: 4, beta: 1.0}
        data: {name: digits, batch_size: 16}
    """)


def test_extends_merges_parent_first(vae_config):
    cfg = load_config(vae_config)
    assert cfg.seed == 3 and cfg.trainer == {"max_epochs": 2, "accelerator": "cpu"}
    assert cfg.model["latent_dim"] == 4 and cfg.data["batch_size"] == 16
    # Defaults of the constructor are filled in, and the shape comes from the dataset.
    assert cfg.model["likelihood"] == "bernoulli"
    assert cfg.model["channels"] == 1 and cfg.model["image_size"] == 8
    assert cfg.data["seed"] == 3


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.beta=0.5", "trainer.max_epochs=5"],  # ${args_no_hyphens}
        ["--model.beta=0.5", "--trainer.max_epochs=5"],  # ${args}
        ["--model.beta", "0.5", "--trainer.max_epochs", "5"],  # ${args_no_equals}
        ["model={'beta': 0.5}", "trainer={'max_epochs': 5}"],  # nested sweep parameter, as a dict literal
        ["--model={'beta': 0.5}", "--trainer.max_epochs=5"],
    ],
)
def test_every_override_form_gives_the_same_config(vae_config, overrides):
    cfg = load_config(vae_config, overrides)
    assert cfg.model["beta"] == 0.5 and isinstance(cfg.model["beta"], float)
    assert cfg.trainer["max_epochs"] == 5
    # A dict literal merges into the section: the other keys stay.
    assert cfg.model["latent_dim"] == 4 and cfg.trainer["accelerator"] == "cpu"


def test_override_values_are_typed():
    assert parse_value("3") == 3 and parse_value("1e-4") == 1e-4 and parse_value("1.0e-4") == 1e-4
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("null") is None and parse_value("None") is None
    assert parse_value("[1, 2, 2]") == [1, 2, 2] and parse_value("ddim") == "ddim"
    assert split_overrides(["--a.b", "x", "c=1"]) == [("a.b", "x"), ("c", 1)]


def test_lists_become_tuples_for_tuple_arguments(vae_config):
    cfg = load_config(vae_config, ["model.hidden_dims=[32, 16]"])
    assert cfg.model["hidden_dims"] == (32, 16)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.betaa=0.5"], "model.betaa: unknown key for VAE. Valid keys:"),
        (["model.betaa=0.5"], "Did you mean 'beta'?"),
        (["model.beta=high"], "model.beta: expected a number, got 'high'"),
        (["model.latent_dim=2.5"], "model.latent_dim: expected an integer, got 2.5"),
        (["model.likelihood=bernouli"], "model.likelihood: expected one of 'bernoulli', 'gaussian'"),
        (["model.likelihood=bernouli"], "Did you mean 'bernoulli'?"),
        (["model.name=vea"], "model.name: unknown model 'vea'. Valid choices: "),
        (["model.name=vea"], "Did you mean 'vae'?"),
        (["data.name=cifar"], "Did you mean 'cifar10'?"),
        (["trainer.max_epoch=3"], "trainer.max_epoch: unknown lightning.Trainer argument. Did you mean 'max_epochs'?"),
        (["trainer.logger=false"], "trainer.logger cannot be set in a config"),
        (["run.num_sample=3"], "run.num_sample: unknown key"),
        (["modle.beta=1"], "unknown top-level key 'modle'"),
        (["model.channels=3"], "model.channels=3 does not match the dataset"),
        (["model.beta"], "cannot read the argument 'model.beta': overrides look like a.b=v"),
        (["--model.beta", "--trainer.max_epochs=3"], "override '--model.beta' has no value"),
        (["--model.beta"], "override '--model.beta' has no value"),
        (["model.hidden_dims=[a"], "cannot parse the value"),
        (["seed=x"], "seed: expected an integer"),
    ],
)
def test_errors_name_the_key_the_value_and_the_choices(vae_config, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(vae_config, overrides)
    assert message in str(info.value)


def test_malformed_yaml_and_missing_files(tmp_path):
    bad = write(tmp_path / "bad.yaml", "model: {name: vae\n  beta: [1,\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    not_a_mapping = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(not_a_mapping)
    no_model = write(tmp_path / "nomodel.yaml", "data: {name: digits}\n")
    with pytest.raises(ConfigError, match="no 'model:' section"):
        load_config(no_model)


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_resolved_config_round_trips(vae_config, tmp_path):
    cfg = load_config(vae_config, ["model.beta=0.25"])
    saved = write(tmp_path / "resolved.yaml", cfg.to_yaml())
    again = load_config(saved)
    assert again.to_dict() == cfg.to_dict()


def test_data_root_defaults_to_lit_gen_data(tmp_path, monkeypatch):
    write(tmp_path / "m.yaml", "model: {name: ae}\ndata: {name: mnist}\n")
    monkeypatch.setenv("LIT_GEN_DATA", "/datasets")
    assert load_config(tmp_path / "m.yaml").data["root"] == "/datasets"
    assert load_config(tmp_path / "m.yaml", ["data.root=/elsewhere"]).data["root"] == "/elsewhere"
    monkeypatch.delenv("LIT_GEN_DATA")
    assert load_config(tmp_path / "m.yaml").data["root"] == "data"


# ------------------------------------------------------------------ renamed keys
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MOVED_CODEBOOK_EMA = r"model.ema_decay moved into the quantizer section: write model.quantizer: \{name: vq, codebook_ema_decay: 0.99\}"


@pytest.mark.parametrize("family", ["vqvae", "vqgan"])
def test_the_old_codebook_ema_key_in_a_config_file_names_the_new_one(tmp_path, family):
    path = write(tmp_path / "old.yaml", f"""
        model: {{name: {family}, ema_decay: 0.99}}
        data: {{name: digits}}
    """)
    with pytest.raises(ConfigError, match=MOVED_CODEBOOK_EMA):
        load_config(path)


@pytest.mark.parametrize("override", [
    ["model.ema_decay=0.99"],                # an override, or a sweep trial through ${args_no_hyphens}
    ["--model.ema_decay", "0.99"],           # ${args_no_equals}
    ["model={'ema_decay': 0.99}"],           # a nested sweep parameter, as W&B passes it
])
def test_the_old_codebook_ema_key_as_an_override_or_sweep_parameter_names_the_new_one(override):
    with pytest.raises(ConfigError, match=MOVED_CODEBOOK_EMA):
        load_config(CONFIGS / "vqvae_digits.yaml", override)
    with pytest.raises(ConfigError, match="model.codebook_ema_decay moved into the quantizer section"):
        load_config(CONFIGS / "vqvae_digits.yaml", ["model.codebook_ema_decay=0.5"])
    cfg = load_config(CONFIGS / "vqvae_digits.yaml", ["model.quantizer.codebook_ema_decay=0.5"])
    assert cfg.model["quantizer"]["codebook_ema_decay"] == 0.5
    # The diffusion family's weight EMA is a section of its own now, and it has no codebook.
    assert load_config(CONFIGS / "ddpm_digits.yaml", ["model.ema.decay=0.99"]).model["ema"]["decay"] == 0.99
    with pytest.raises(ConfigError, match=r"model.ema_decay moved into the ema section: write "
                                          r"model.ema: \{name: exponential, decay: 0.99\}"):
        load_config(CONFIGS / "ddpm_digits.yaml", ["model.ema_decay=0.99"])
    with pytest.raises(ConfigError, match="model.codebook_ema_decay: unknown key for Diffusion"):
        load_config(CONFIGS / "ddpm_digits.yaml", ["model.codebook_ema_decay=0.99"])


def test_a_section_that_names_another_entry_starts_afresh_in_files_and_overrides(tmp_path):
    # The parent's objective settings belong to vp; switching the objective by name must not carry them to flow.
    parent = write(tmp_path / "parent.yaml", """
        model: {name: diffusion, objective: {name: vp, timesteps: 500, prediction: v}}
        data: {name: digits}
    """)
    child = write(tmp_path / "child.yaml", """
        extends: parent.yaml
        model: {objective: {name: flow, time_sampling: uniform}}
    """)
    assert load_config(child).model["objective"] == {"name": "flow", "time_sampling": "uniform"}
    for override in (["model.objective={name: edm, sigma_data: 1.0}"], ["model.objective.name=edm", "model.objective.sigma_data=1.0"]):
        assert load_config(parent, override).model["objective"]["sigma_data"] == 1.0
    # The same entry merges key by key, in files and overrides alike.
    same = write(tmp_path / "same.yaml", """
        extends: parent.yaml
        model: {objective: {name: vp, timesteps: 100}}
    """)
    assert load_config(same).model["objective"]["prediction"] == "v"
    assert load_config(parent, ["model.objective={name: vp, timesteps: 50}"]).model["objective"]["prediction"] == "v"


def test_renaming_the_run_keeps_every_section(tmp_path):
    # The run's own name is not a section's entry: name=other must not start the config afresh.
    parent = write(tmp_path / "parent.yaml", """
        name: first
        model: {name: vae, latent_dim: 3}
        data: {name: digits, batch_size: 7}
    """)
    cfg = load_config(parent, ["name=second"])
    assert cfg.name == "second" and cfg.data["batch_size"] == 7 and cfg.model["latent_dim"] == 3
