"""Sweep files: every W&B form parses; every mistake fails before anything runs, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_gen.errors import SweepError
from lit_gen.sweeping.space import DEFAULT_COMMAND, load_sweep, parse_sweep

REPO = Path(__file__).resolve().parents[2]


def sweep(parameters, method="random", **top):
    raw = {"method": method, "metric": {"name": "val/loss"}, "parameters": parameters, "program": "train.py", **top}
    if raw["program"] is None:
        del raw["program"]
    return parse_sweep(raw, source="test.yaml")


def one(spec: dict, method="random"):
    return sweep({"x": spec}, method=method).parameters[0]


@pytest.mark.parametrize("spec, distribution", [
    ({"value": 3}, "constant"),
    ({"values": ["adam", "sgd"]}, "categorical"),
    ({"values": [1, 2], "probabilities": [0.25, 0.75]}, "categorical_w_probabilities"),
    ({"min": 1, "max": 10}, "int_uniform"),
    ({"min": 0.0, "max": 1}, "uniform"),
    ({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2}, "q_uniform"),
    ({"distribution": "log_uniform", "min": -9.2, "max": -2.3}, "log_uniform"),
    ({"distribution": "log_uniform_values", "min": 1.0e-4, "max": 0.1}, "log_uniform_values"),
    ({"distribution": "q_log_uniform", "min": 0, "max": 5}, "q_log_uniform"),
    ({"distribution": "q_log_uniform_values", "min": 16, "max": 256, "q": 16}, "q_log_uniform_values"),
    ({"distribution": "inv_log_uniform", "min": 1, "max": 5}, "inv_log_uniform"),
    ({"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0}, "inv_log_uniform_values"),
    ({"distribution": "normal", "mu": 1.0, "sigma": 2.0}, "normal"),
    ({"distribution": "q_normal"}, "q_normal"),
    ({"distribution": "log_normal", "mu": 0.0}, "log_normal"),
    ({"distribution": "q_log_normal", "q": 5}, "q_log_normal"),
    ({"distribution": "beta", "a": 2.0, "b": 5.0}, "beta"),
    ({"distribution": "categorical", "values": [1, 2, 3]}, "categorical"),
    ({"distribution": "constant", "value": "x"}, "constant"),
])
def test_every_documented_parameter_form_parses(spec, distribution):
    assert one(spec).distribution == distribution


def test_defaults_follow_the_wandb_schema():
    p = one({"distribution": "q_log_normal"})
    assert (p.mu, p.sigma, p.q) == (0.0, 1.0, 1.0)


def test_nested_parameters_flatten_to_paths_and_nest_back():
    spec = sweep({"model": {"parameters": {"beta": {"values": [0.5, 1.0]}, "latent_dim": {"value": 8}}},
                  "trainer.max_epochs": {"value": 2}})
    assert [p.path for p in spec.parameters] == [("model", "beta"), ("model", "latent_dim"), ("trainer.max_epochs",)]
    nested = spec.nest({"model.beta": 0.5, "model.latent_dim": 8, "trainer.max_epochs": 2})
    assert nested == {"model": {"beta": 0.5, "latent_dim": 8}, "trainer.max_epochs": 2}


def test_top_level_keys_and_defaults():
    spec = sweep({"x": {"value": 1}}, name="n", description="d", project="p",
                 entity="e", run_cap=4, early_terminate={"type": "hyperband", "min_iter": 2})
    assert (spec.name, spec.run_cap, spec.command) == ("n", 4, DEFAULT_COMMAND)
    assert (spec.metric.goal, spec.early_terminate.eta, spec.early_terminate.strict) == ("minimize", 3.0, True)  # W&B's schema defaults


@pytest.mark.parametrize("raw, named", [
    ({"method": "grid", "parameters": {"x": {"value": 1}}, "metrics": {}}, "'metrics'"),
    ({"method": "grid", "parameters": {"x": {"value": 1}}, "metrics": {}}, "Did you mean 'metric'"),
    ({"method": "gird", "parameters": {"x": {"value": 1}}}, "method: 'gird'"),
    ({"method": "grid"}, "parameters: is missing"),
    ({"method": "bayes", "parameters": {"x": {"min": 0.0, "max": 1.0}}}, "bayes needs metric"),
    ({"method": "random", "parameters": {"x": {"value": 1}}, "early_terminate": {"type": "hyperband", "min_iter": 1}},
     "early_terminate needs metric"),
    ({"method": "grid", "metric": {"name": "l", "goal": "minimise"}, "parameters": {"x": {"value": 1}}}, "metric.goal"),
    ({"method": "grid", "metric": {"nam": "l"}, "parameters": {"x": {"value": 1}}}, "metric: unknown key 'nam'"),
    ({"method": "grid", "run_cap": 0, "program": "t.py", "parameters": {"x": {"value": 1}}}, "run_cap: must be a positive"),
])
def test_bad_top_level_fails_naming_the_key(raw, named):
    with pytest.raises(SweepError, match=None) as info:
        parse_sweep(raw, source="test.yaml")
    assert named in str(info.value)
    assert str(info.value).startswith("test.yaml: ")


@pytest.mark.parametrize("spec, named", [
    ({"distribution": "lognormal"}, "parameters.x.distribution: unknown distribution 'lognormal'"),
    ({"distribution": "lognormal"}, "Did you mean 'log_normal'"),
    ({"min": 5, "max": 1}, "parameters.x: min (5) is greater than max (1)"),
    ({"distribution": "uniform", "min": 1.0, "max": 0.5}, "min (1.0) is greater than max (0.5)"),
    ({"values": [1, 2], "probabilities": [0.5, 0.4]}, "parameters.x.probabilities: sum to 0.9"),
    ({"values": [1, 2], "probabilities": [1.0]}, "parameters.x.probabilities: must be a list of 2"),
    ({"min": "1e-4", "max": 0.1}, "parameters.x.min: '1e-4' was read as a string"),
    ({"min": "1e-4", "max": 0.1}, "Write 1.0e-4 instead of 1e-4"),
    ({"distribution": "uniform", "min": 0.0, "max": "big"}, "parameters.x.max: expected a number, got 'big'"),
    ({"values": ["1e-3", 0.01]}, "parameters.x.values[0]: '1e-3' was read as a string"),
    ({"distribution": "log_uniform_values", "min": 0.0, "max": 1.0}, "parameters.x.min"),
    ({"distribution": "int_uniform", "min": 0.5, "max": 3}, "parameters.x.min: int_uniform needs integers"),
    ({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}, "parameters.x.q"),
    ({"distribution": "normal", "sigma": -1.0}, "parameters.x.sigma"),
    ({"distribution": "normal", "min": 0}, "parameters.x: unknown key 'min'"),
    ({"mean": 0.0}, "parameters.x: cannot tell the distribution"),
    ({"values": []}, "parameters.x.values: must be a non-empty list"),
    ({"distribution": "uniform", "min": 0.0}, "needs max"),
])
def test_bad_parameter_fails_naming_the_key(spec, named):
    with pytest.raises(SweepError) as info:
        one(spec)
    assert named in str(info.value)


def test_bad_nested_parameter_names_its_full_path():
    with pytest.raises(SweepError, match=r"parameters\.model\.parameters\.beta\.max: expected a number"):
        sweep({"model": {"parameters": {"beta": {"min": 0.0, "max": "x"}}}})
    with pytest.raises(SweepError, match=r"parameters\.model: a nested parameter holds only parameters:"):
        sweep({"model": {"parameters": {"beta": {"value": 1}}, "value": 3}})


def test_grid_accepts_only_discrete_parameters_and_names_the_culprit():
    sweep({"a": {"values": [1, 2]}, "b": {"value": 3}, "c": {"min": 1, "max": 3},
           "d": {"distribution": "q_uniform", "min": 0, "max": 4, "q": 2}}, method="grid")
    with pytest.raises(SweepError, match=r"parameters\.lr: method: grid needs discrete parameters.*log_uniform_values"):
        sweep({"a": {"values": [1, 2]}, "lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 0.1}},
              method="grid")


@pytest.mark.parametrize("command, named", [
    (["python", "${programm}", "${args}"], "unknown macro ${programm}"),
    (["python", "--x=${args}"], "only as a list item of its own"),
    (["${env}", "${interpreter}", "${program}", "${args}"], "program: is required"),
])
def test_bad_command_fails(command, named):
    with pytest.raises(SweepError) as info:
        sweep({"x": {"value": 1}}, command=command, program=None)
    assert named in str(info.value)


@pytest.mark.parametrize("early, named", [
    ({"type": "hyperband"}, "give min_iter"),
    ({"type": "hyperband", "max_iter": 27}, "max_iter needs s"),
    ({"type": "hyperband", "min_iter": 3, "eta": 1}, "early_terminate.eta"),
    ({"type": "envelope", "min_iter": 3}, "early_terminate.type"),
    ({"type": "hyperband", "min_iter": 0}, "early_terminate.min_iter"),
    ({"type": "hyperband", "min_iter": 3, "strict": "yes"}, "early_terminate.strict"),
])
def test_bad_early_terminate_fails(early, named):
    with pytest.raises(SweepError) as info:
        sweep({"x": {"value": 1}}, early_terminate=early)
    assert named in str(info.value)


def test_sweep_file_is_plain_yaml_not_omegaconf(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("method: grid\nparameters:\n  x: {values: [1, 2]}\n"
                    "command:\n  - ${env}\n  - ${interpreter}\n  - -m\n  - lit_gen.fit\n  - ${args_no_hyphens}\n")
    spec = load_sweep(path)
    assert spec.command[-1] == "${args_no_hyphens}" and spec.name == "s"
    with pytest.raises(SweepError, match="does not exist"):
        load_sweep(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_are_valid_overrides_of_their_config(path):
    from lit_gen.config import load_config
    from lit_gen.sweeping.command import format_flags
    from lit_gen.sweeping.strategies import RandomStrategy

    spec = load_sweep(path)
    assert "${args_no_hyphens}" in spec.command
    if spec.program == "lit_gen/ema.py":
        _check_ema_sweep(spec)
        return
    assert spec.program == "lit_gen/fit.py"
    config = REPO / spec.command[spec.command.index("--config") + 1]
    assert config.is_file(), f"{path.name} runs {config.name}, which does not exist"
    # One draw of every parameter, passed exactly as a trial gets it, must pass config validation.
    params = RandomStrategy(spec, seed=0).suggest([], 0).params
    overrides = format_flags("args_no_hyphens", spec.nest(params))
    cfg = load_config(config, overrides + ["logger.group=g", "run.output_dir=/tmp/x"])
    for name, value in params.items():
        section, *rest = name.split(".")
        node = getattr(cfg, section)
        for part in rest:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        assert node == value, name


def _check_ema_sweep(spec):
    """An EMA-length sweep's trial: its command parses and every drawn parameter is one ``lit_gen.ema`` takes."""
    from lit_gen.commands.ema import parse_args, sweep_arguments
    from lit_gen.sweeping.command import format_flags
    from lit_gen.sweeping.strategies import RandomStrategy

    params = RandomStrategy(spec, seed=0).suggest([], 0).params
    flags = format_flags("args_no_hyphens", spec.nest(params)) + ["logger.group=g", "run.output_dir=/tmp/x"]
    argv = list(spec.command[spec.command.index("lit_gen.ema") + 1:spec.command.index("${args_no_hyphens}")])
    args = parse_args(argv + flags)
    given = sweep_arguments(args.sweep)
    for name, value in params.items():
        assert float(given[name]) == value, name
