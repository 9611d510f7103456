"""Fuzzing the command-line modules: whatever a user hands them, a result or one line and exit code 2.

Random sweep files (schema-shaped, with wrong types, non-finite numbers and bounds; and broken YAML)
given to ``lit_gen.sweep --dry-run`` print a plan or fail with one ``error:`` line; random bytes
given as a checkpoint to ``sample``, ``evaluate`` and ``fit --resume`` fail with one line. Most
examples call the in-process ``main`` through ``run_main`` (what ``python -m`` runs); a few run the
real commands.
"""

from __future__ import annotations

import contextlib
import io
import string
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lit_gen import evaluate, fit, sample, sweep
from lit_gen.cli import run_main
from lit_gen.sweeping.parameters import DISTRIBUTION_KEYS

def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def call(main, argv: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``run_main(main, argv)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_main(main, argv)
        except SystemExit as exc:
            code = exc.code
        else:  # run_main always exits
            raise AssertionError("run_main returned without exiting")
    return code, out.getvalue(), err.getvalue()


def assert_one_error_line(code, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err


# ------------------------------------------------------------------------------------ sweep files
# Numbers of every kind a file can hold: small, huge, non-finite, and strings that look like numbers.
NUMBERS = st.one_of(
    st.integers(-5, 50),
    st.integers(-10**30, 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10, 10),
    st.sampled_from([0, 1, 1e-300, 1e300, 709.0, 710.0, -1e308, 1e308, "1e-4", "x"]),
)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(string.printable, max_size=8))
NAMES = st.one_of(st.sampled_from(["lr", "model.beta", "beta", "latent_dim", "seed", "trainer.max_epochs"]),
                  st.text(string.ascii_letters + string.digits + "_.-/ ", min_size=1, max_size=10))
KEYS = ["min", "max", "q", "mu", "sigma", "a", "b", "value", "values", "probabilities"]

SMALL = st.one_of(st.integers(-5, 50), st.floats(-10, 10))
POSITIVE = st.floats(1e-6, 10)


def ordered(low, high) -> dict:
    try:
        return {"min": min(low, high), "max": max(low, high)}
    except TypeError:  # a string among NUMBERS: the bounds as drawn
        return {"min": low, "max": high}


# Specs a user means to be valid (most of them are), so that many files get as far as a plan.
VALID_SPEC = st.one_of(
    st.builds(lambda v: {"value": v}, st.one_of(SMALL, st.booleans(), st.text(string.ascii_letters, max_size=5))),
    st.builds(lambda v: {"values": v}, st.lists(st.one_of(SMALL, st.text(string.ascii_letters, max_size=4)),
                                                min_size=1, max_size=4)),
    st.builds(ordered, st.integers(-5, 50), st.integers(-5, 50)),
    st.builds(ordered, st.floats(-10, 10), st.floats(-10, 10)),
    st.builds(lambda r, q: {"distribution": "q_uniform", **r, "q": q}, st.builds(ordered, SMALL, SMALL),
              st.one_of(POSITIVE, st.integers(1, 5))),
    st.builds(lambda d, r: {"distribution": d, **r},
              st.sampled_from(["log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values"]),
              st.builds(ordered, POSITIVE, POSITIVE)),
    st.builds(lambda d, r: {"distribution": d, **r}, st.sampled_from(["log_uniform", "inv_log_uniform"]),
              st.builds(ordered, NUMBERS, NUMBERS)),
    st.builds(lambda d, mu, sigma: {"distribution": d, "mu": mu, "sigma": sigma},
              st.sampled_from(["normal", "q_normal", "log_normal", "q_log_normal"]), NUMBERS, NUMBERS),
    st.builds(lambda d, a, b: {"distribution": d, "a": a, "b": b}, st.sampled_from(["beta", "q_beta"]), POSITIVE, POSITIVE),
)
# Anything else: wrong keys, wrong types, non-finite values and bounds, unknown distributions.
ANY_SPEC = st.one_of(
    st.builds(lambda v: {"value": v}, SCALARS),
    st.builds(lambda v: {"values": v}, st.one_of(st.lists(SCALARS, max_size=4), SCALARS)),
    st.builds(lambda a, b: {"min": a, "max": b}, NUMBERS, NUMBERS),
    st.builds(lambda d, k: {"distribution": d, **k}, st.sampled_from([*DISTRIBUTION_KEYS, "bogus"]),
              st.dictionaries(st.sampled_from(KEYS), st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3)), max_size=4)),
    SCALARS,
)
COMMAND = ["${env}", "${interpreter}", "-m", "lit_gen.fit", "--config", "configs/vae_digits.yaml", "${args_no_hyphens}"]
VALID_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True)


def parameter_tree(names, spec):
    return st.recursive(
        st.dictionaries(names, spec, min_size=1, max_size=3),
        lambda inner: st.dictionaries(names, st.one_of(spec, st.builds(lambda p: {"parameters": p}, inner)),
                                      min_size=1, max_size=3),
        max_leaves=6,
    )


# Files a user means to be right: a known method, parameters in the W&B forms, a usable command.
INTENDED = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["grid", "random", "bayes"]),
        "parameters": parameter_tree(VALID_NAMES, VALID_SPEC),
        "command": st.just(COMMAND),
        "metric": st.fixed_dictionaries({"name": st.just("val/loss"), "goal": st.sampled_from(["minimize", "maximize"])}),
    },
    optional={
        "early_terminate": st.fixed_dictionaries({"type": st.just("hyperband"), "min_iter": st.integers(1, 5),
                                                  "eta": st.integers(2, 4)}),
        "run_cap": st.integers(1, 10),
        "name": st.text(string.ascii_letters, min_size=1, max_size=8),
    },
)
# Files with anything anywhere: wrong keys and types, unknown methods and macros, non-finite numbers.
ANYTHING = st.tuples(
    st.fixed_dictionaries(
        {
            "method": st.sampled_from(["grid", "random", "bayes", "custom", "grdi", None]),
            "parameters": st.one_of(parameter_tree(NAMES, st.one_of(VALID_SPEC, ANY_SPEC)), SCALARS),
            "command": st.one_of(st.just(COMMAND), SCALARS,
                                 st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["${args}", "${nope}", "a${args}"])),
                                          max_size=4)),
        },
        optional={
            "metric": st.one_of(st.fixed_dictionaries({"name": st.sampled_from(["val/loss", ""])},
                                                      optional={"goal": st.sampled_from(["minimize", "maximize", "up"]),
                                                                "target": NUMBERS}), SCALARS),
            "early_terminate": st.fixed_dictionaries(
                {"type": st.sampled_from(["hyperband", "median"])},
                optional={"min_iter": NUMBERS, "max_iter": NUMBERS, "s": NUMBERS, "eta": NUMBERS, "strict": SCALARS}),
            "program": st.one_of(st.just("lit_gen/fit.py"), SCALARS),
            "run_cap": NUMBERS,
            "name": st.one_of(st.text(string.ascii_letters, min_size=1, max_size=8), SCALARS),
        },
    ),
    st.dictionaries(NAMES, SCALARS, max_size=1),  # now and then a key the schema does not know
).map(lambda t: {**t[0], **t[1]})


def dry_run(text: str) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.yaml"
        path.write_text(text)
        return call(sweep.main, [str(path), "--dry-run", "--count", "2", "--store", str(Path(folder) / "store")])


def check_plan_or_one_line(text: str) -> None:
    code, out, err = dry_run(text)
    assert "Traceback" not in err, err
    if code == 0:
        assert out.startswith("sweep ") and "trial(s)" in out, out
    else:
        assert_one_error_line(code, err)


@fuzz(150)
@given(st.one_of(INTENDED, ANYTHING))
@example({"method": "random", "parameters": {"lr": {"distribution": "log_uniform", "min": 0, "max": 1000}}})
@example({"method": "random", "parameters": {"lr": {"min": -1e308, "max": 1e308}}})
@example({"method": "grid", "parameters": {"n": {"min": 0, "max": 10**12}}})
@example({"method": "grid", "parameters": {"x": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 1e-300}}})
@example({"method": "random", "parameters": {"model": {"parameters": {"beta": {"value": float("nan")}}}}})
@example({"method": "random", "parameters": {"lr": {"values": [0.1, float("inf")]}}})
@example({"method": "random", "parameters": {"lr": {"distribution": "q_normal", "mu": 0, "sigma": 1e300, "q": 1e-300}}})
def test_random_sweep_files_give_a_plan_or_one_line(raw):
    check_plan_or_one_line(yaml.safe_dump(raw, sort_keys=False))


@fuzz(60)
@given(st.one_of(st.text(max_size=80),
                 st.tuples(st.one_of(INTENDED, ANYTHING), st.integers(0, 400)).map(lambda s: yaml.safe_dump(s[0], sort_keys=False)[:s[1]])))
@example("method: grid\nparameters: {lr: {values: [1, 2]\n")
@example("method: random\nparameters:\n  lr: {value: 1}\n\tbad: tab\n")
@example("!!python/object:os.system x")
def test_broken_yaml_gives_a_plan_or_one_line(text):
    check_plan_or_one_line(text)


@pytest.mark.parametrize("spec, where", [
    ("{value: .nan}", "parameters.model.parameters.beta.value"),
    ("{values: [0.5, .inf]}", "parameters.model.parameters.beta.values[1]"),
    ("{values: [[1, -.inf]]}", "parameters.model.parameters.beta.values[0][1]"),
    ("{min: .nan, max: 1.0}", "parameters.model.parameters.beta.min"),
    ("{min: 0.0, max: .inf}", "parameters.model.parameters.beta.max"),
    ("{distribution: normal, mu: 0.0, sigma: .inf}", "parameters.model.parameters.beta.sigma"),
    ("{distribution: q_uniform, min: 0.0, max: 1.0, q: .nan}", "parameters.model.parameters.beta.q"),
    ("{distribution: log_uniform, min: 0, max: 1000}", "parameters.model.parameters.beta: log_uniform"),
    ("{min: -1.0e+308, max: 1.0e+308}", "parameters.model.parameters.beta: uniform"),
])
def test_non_finite_sweep_values_are_refused_naming_the_parameter(spec, where):
    code, _, err = dry_run(f"method: random\nparameters:\n  model:\n    parameters:\n      beta: {spec}\n")
    assert_one_error_line(code, err)
    assert where in err and ("finite" in err or "beyond a float's range" in err), err


# ------------------------------------------------------------------------------------ checkpoints
JUNK = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b),  # a zip's magic, as torch.save writes
    st.binary(max_size=300).map(lambda b: b"\x80\x02" + b),  # a pickle's protocol header
    st.sampled_from([b"", b"N.", b"K\x05.", b"}q\x00.", b"\x80\x02}q\x00X\n\x00\x00\x00state_dictq\x01K\x01s."]),
)


@fuzz(40)
@given(JUNK)
def test_random_bytes_as_a_checkpoint_give_one_line(junk):
    with tempfile.TemporaryDirectory() as folder:
        ckpt = Path(folder) / "junk.ckpt"
        ckpt.write_bytes(junk)
        for main, argv in [
            (sample.main, ["--ckpt", str(ckpt), "--out", str(Path(folder) / "s.png"), "--device", "cpu"]),
            (evaluate.main, ["--ckpt", str(ckpt), "--num-samples", "2"]),
            (fit.main, ["--config", "configs/vae_digits.yaml", "--resume", str(ckpt), "logger.wandb=false",
                        f"run.output_dir={folder}/runs"]),
        ]:
            code, _, err = call(main, argv)
            assert_one_error_line(code, err)
        # Nothing was written beside the bad checkpoint (fit --resume continues in its folder).
        assert sorted(p.name for p in Path(folder).iterdir()) == ["junk.ckpt"]


MODEL_NAMES = st.sampled_from(["ae", "vae", "vqvae", "ddpm", "prior", "vqgan", "nope", ""])
HPARAM_KEYS = st.sampled_from(["channels", "image_size", "latent_dim", "hidden_dims", "lr", "beta", "num_codes",
                               "timesteps", "first_stage", "base_channels", "unknown"])
STRUCTURED = st.fixed_dictionaries(
    {"state_dict": st.one_of(st.dictionaries(st.text(max_size=6), st.just(0.5), max_size=2), SCALARS,
                             st.lists(SCALARS, max_size=2))},
    optional={"lit_gen": st.one_of(st.fixed_dictionaries({"model": st.one_of(MODEL_NAMES, SCALARS)}), SCALARS),
              "hyper_parameters": st.one_of(st.dictionaries(HPARAM_KEYS, st.one_of(SCALARS, st.lists(SCALARS, max_size=3)),
                                                            max_size=4), SCALARS)},
)


@pytest.mark.slow  # builds models of every family from random arguments
@fuzz(25)
@given(STRUCTURED)
@example({"state_dict": 1, "lit_gen": {"model": "vae"}, "hyper_parameters": 5})
@example({"state_dict": [], "lit_gen": {"model": "vae"}, "hyper_parameters": {"channels": 1, "image_size": 8}})
def test_damaged_checkpoint_contents_give_one_line(state):
    """Files that load but hold nonsense where a lit_gen checkpoint holds its parts."""
    with tempfile.TemporaryDirectory() as folder:
        ckpt = Path(folder) / "odd.ckpt"
        torch.save(state, ckpt)
        code, _, err = call(sample.main, ["--ckpt", str(ckpt), "--out", str(Path(folder) / "s.png"), "--device", "cpu"])
        assert_one_error_line(code, err)


@pytest.mark.slow  # four interpreter start-ups with torch and Lightning
def test_the_real_commands_exit_2_with_one_line(tmp_path, cli):
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: grid\nparameters: {lr: {values: [1, .inf]}}\n")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(bytes(range(256)) * 3)
    for module, args in [("lit_gen.sweep", [str(broken), "--dry-run"]),
                         ("lit_gen.sample", ["--ckpt", str(junk), "--device", "cpu"]),
                         ("lit_gen.fit", ["--config", "configs/vae_digits.yaml", "--resume", str(junk), "logger.wandb=false"])]:
        result = cli(module, *args)
        assert_one_error_line(result.returncode, result.stderr)
    plan = cli("lit_gen.sweep", "sweeps/vae_mnist_beta.yaml", "--dry-run", "--count", "2")
    assert plan.returncode == 0 and "first 2 trial(s)" in plan.stdout, plan.stderr
