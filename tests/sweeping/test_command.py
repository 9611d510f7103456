"""A trial's argv: the sweep's command with W&B's macros expanded the way ``wandb agent`` does."""

from __future__ import annotations

import json
import sys

import pytest

from lit_gen.errors import SweepError
from lit_gen.sweeping.command import build_argv, require_flag_style
from lit_gen.sweeping.space import parse_sweep

CONFIG = {"model": {"beta": 0.5, "latent_dim": 8}, "lr": 1e-05, "flag": True, "off": False}


def spec_with(command):
    return parse_sweep({"method": "grid", "program": "lit_gen/fit.py", "command": command,
                        "parameters": {"x": {"value": 1}}}, source="t.yaml")


@pytest.mark.parametrize("macro, expected", [
    ("${args}", ["--model={'beta': 0.5, 'latent_dim': 8}", "--lr=1e-05", "--flag=True", "--off=False"]),
    ("${args_no_hyphens}", ["model={'beta': 0.5, 'latent_dim': 8}", "lr=1e-05", "flag=True", "off=False"]),
    ("${args_no_equals}", ["--model", "{'beta': 0.5, 'latent_dim': 8}", "--lr", "1e-05", "--flag", "True",
                           "--off", "False"]),
    ("${args_no_boolean_flags}", ["--model={'beta': 0.5, 'latent_dim': 8}", "--lr=1e-05", "--flag"]),
    ("${args_override_hydra}", ["++model={'beta': 0.5, 'latent_dim': 8}", "++lr=1e-05", "++flag=True", "++off=False"]),
])
def test_flag_macros_format_like_the_wandb_agent(macro, expected):
    argv = build_argv(spec_with(["${interpreter}", "-m", "lit_gen.fit", macro]), CONFIG)
    assert argv == [sys.executable, "-m", "lit_gen.fit", *expected]


def test_engine_arguments_follow_the_flag_style():
    spec = spec_with(["${env}", "${interpreter}", "${program}", "--config", "c.yaml", "${args_no_equals}"])
    argv = build_argv(spec, {"lr": 0.1}, run_id="s-001", extras={"run.output_dir": "/s/runs", "logger.group": "s"})
    assert argv[argv.index("lit_gen/fit.py") + 1:] == [
        "--config", "c.yaml", "--run-id", "s-001", "--lr", "0.1", "--run.output_dir", "/s/runs", "--logger.group", "s"]
    assert build_argv(spec, {"lr": 0.1}, display=True)[:2] == ["python", "lit_gen/fit.py"]


def test_json_macros_and_envvars(tmp_path, monkeypatch):
    monkeypatch.setenv("CFG_DIR", "/cfgs")
    spec = spec_with(["prog", "--cfg=${envvar:CFG_DIR}/a.yaml", "${args_json}", "${args_json_file}"])
    argv = build_argv(spec, CONFIG, json_file=tmp_path / "args" / "t.json")
    assert argv[1] == "--cfg=/cfgs/a.yaml"
    assert json.loads(argv[2]) == CONFIG
    assert json.loads((tmp_path / "args" / "t.json").read_text()) == CONFIG and argv[3] == str(tmp_path / "args" / "t.json")


def test_the_offline_engine_needs_a_flag_macro():
    with pytest.raises(SweepError, match=r"needs one to pass each trial its parameters, --run-id"):
        require_flag_style(spec_with(["prog", "${args_json}"]))
