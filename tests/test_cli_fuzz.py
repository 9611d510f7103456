"""Fuzzing the command-line modules: whatever a user hands them, a result or one line and exit code 2.

Random sweep files given to ``lit_gen.sweep --dry-run``: valid ones (valid by construction) print their
plan; a valid one with one known mistake fails with one ``error:`` line naming it; anything else
(wrong types, non-finite numbers and bounds, broken YAML) prints a plan or one error line; random bytes
given as a checkpoint to ``sample``, ``evaluate`` and ``fit --resume`` fail with one line. Most
examples call the in-process ``main`` through ``run_main`` (what ``python -m`` runs); a few run the
real commands.
"""

from __future__ import annotations

import contextlib
import io
import math
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
from tests.conftest import cli_env

REPO = Path(__file__).resolve().parents[1]


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


# Specs valid by construction: finite numbers in range, for random and bayes search.
EXPONENTS = st.builds(ordered, st.floats(-10, 10), st.floats(-10, 10))  # log_uniform's exp(+-10) is finite
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
    st.builds(lambda d, r: {"distribution": d, **r}, st.sampled_from(["log_uniform", "inv_log_uniform"]), EXPONENTS),
    st.builds(lambda d, mu, sigma: {"distribution": d, "mu": mu, "sigma": sigma},
              st.sampled_from(["normal", "q_normal", "log_normal", "q_log_normal"]), st.floats(-10, 10),
              st.floats(0, 10)),
    st.builds(lambda d, a, b: {"distribution": d, "a": a, "b": b}, st.sampled_from(["beta", "q_beta"]), POSITIVE, POSITIVE),
)
# Valid for grid search: discrete, with 1 to 20 values on a q_uniform axis (max = min + n q, max excluded).
GRID_SPEC = st.one_of(
    st.builds(lambda v: {"value": v}, st.one_of(SMALL, st.booleans())),
    st.builds(lambda v: {"values": v}, st.lists(st.one_of(SMALL, st.text(string.ascii_letters, max_size=4)),
                                                min_size=1, max_size=4)),
    st.builds(ordered, st.integers(-5, 50), st.integers(-5, 50)),
    st.builds(lambda low, n, q: {"distribution": "q_uniform", "min": low, "max": low + n * q, "q": q},
              st.integers(-5, 50), st.integers(1, 20), st.sampled_from([1, 2, 0.5, 0.25])),
)
# Forms that may be valid or not: bounds and moments of any number (overflowing, non-finite, strings).
RISKY_SPEC = st.one_of(
    st.builds(lambda d, r: {"distribution": d, **r}, st.sampled_from(["log_uniform", "inv_log_uniform"]),
              st.builds(ordered, NUMBERS, NUMBERS)),
    st.builds(lambda d, mu, sigma: {"distribution": d, "mu": mu, "sigma": sigma},
              st.sampled_from(["normal", "q_normal", "log_normal", "q_log_normal"]), NUMBERS, NUMBERS),
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
# No dots: a dotted key ("a.b") beside a nested one (a: {parameters: {b: ...}}) is the same parameter twice.
VALID_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)


def parameter_tree(names, spec):
    return st.recursive(
        st.dictionaries(names, spec, min_size=1, max_size=3),
        lambda inner: st.dictionaries(names, st.one_of(spec, st.builds(lambda p: {"parameters": p}, inner)),
                                      min_size=1, max_size=3),
        max_leaves=6,
    )


def valid_files(method: str, spec) -> st.SearchStrategy[dict]:
    """Sweep files that are right: ``method`` over ``spec``s, a metric, a usable command, optional extras."""
    return st.fixed_dictionaries(
        {
            "method": st.just(method),
            "parameters": parameter_tree(VALID_NAMES, spec),
            "command": st.just(COMMAND),
            "metric": st.fixed_dictionaries({"name": st.just("val/loss"),
                                             "goal": st.sampled_from(["minimize", "maximize"])}),
        },
        optional={
            "early_terminate": st.fixed_dictionaries({"type": st.just("hyperband"), "min_iter": st.integers(1, 5),
                                                      "eta": st.integers(2, 4)}),
            "run_cap": st.integers(1, 10),
            "name": st.text(string.ascii_letters, min_size=1, max_size=8),
        },
    )


VALID = st.one_of(valid_files("grid", GRID_SPEC), valid_files("random", VALID_SPEC), valid_files("bayes", VALID_SPEC))
# Files with anything anywhere: wrong keys and types, unknown methods and macros, non-finite numbers.
ANYTHING = st.tuples(
    st.fixed_dictionaries(
        {
            "method": st.sampled_from(["grid", "random", "bayes", "custom", "grdi", None]),
            "parameters": st.one_of(parameter_tree(NAMES, st.one_of(VALID_SPEC, RISKY_SPEC, ANY_SPEC)), SCALARS),
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


def with_parameter(spec: dict):
    """A mistake: the file gains parameter ``zz_bad`` with ``spec``."""
    return lambda raw: {**raw, "parameters": {**raw["parameters"], "zz_bad": spec}}


def grid_of(spec: dict):
    """A mistake: the file becomes a grid over parameter ``zz_bad`` alone, with ``spec``."""
    return lambda raw: {**raw, "method": "grid", "parameters": {"zz_bad": spec}}


# One mistake each, made in a valid file, and what its error line says.
MISTAKES = {
    "unknown top-level key": (lambda raw: {**raw, "metod": "grid"}, "unknown top-level key 'metod'"),
    "misspelt method": (lambda raw: {**raw, "method": "grdi"}, "is not a search method"),
    "min above max": (with_parameter({"min": 2, "max": 1}), "parameters.zz_bad: min (2) is greater than max (1)"),
    "NaN value": (with_parameter({"value": float("nan")}), "parameters.zz_bad.value: expected a finite number"),
    "infinite bound": (with_parameter({"min": 0.0, "max": float("inf")}), "parameters.zz_bad.max: expected a finite"),
    "log_uniform_values from 0": (with_parameter({"distribution": "log_uniform_values", "min": 0, "max": 1}),
                                  "parameters.zz_bad.min"),
    "zero step": (with_parameter({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}),
                  "parameters.zz_bad.q: the quantisation step must be > 0"),
    "negative sigma": (with_parameter({"distribution": "normal", "sigma": -1}),
                       "parameters.zz_bad.sigma: must be >= 0"),
    "unknown distribution": (with_parameter({"distribution": "gaussian"}), "unknown distribution 'gaussian'"),
    "1e-4 read as a string": (with_parameter({"values": ["1e-4"]}), "parameters.zz_bad.values[0]: '1e-4' was read"),
    "overflowing log_uniform": (with_parameter({"distribution": "log_uniform", "min": 0, "max": 1000}),
                                "parameters.zz_bad: log_uniform with these bounds draws values beyond a float's range"),
    "grid over a continuous parameter": (grid_of({"min": 0.0, "max": 1.0}),
                                         "parameters.zz_bad: method: grid needs discrete parameters"),
    "grid axis of 10**12 values": (grid_of({"min": 0, "max": 10**12}),
                                   "parameters.zz_bad: method: grid would try 1e+12 values"),
    "unknown macro": (lambda raw: {**raw, "command": [*COMMAND, "${nope}"]}, "unknown macro ${nope}"),
    "run_cap 0": (lambda raw: {**raw, "run_cap": 0}, "run_cap: must be a positive integer"),
    "bayes without a metric": (lambda raw: {k: v for k, v in {**raw, "method": "bayes"}.items() if k != "metric"},
                               "method: bayes needs metric"),
    "hyperband eta 1": (lambda raw: {**raw, "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 1}},
                        "early_terminate.eta: must be greater than 1"),
}


def dry_run(text: str) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.yaml"
        path.write_text(text)
        return call(sweep.main, [str(path), "--dry-run", "--count", "2", "--store", str(Path(folder) / "store")])


def leaves(tree: dict) -> list[dict]:
    """The parameter specs of a (valid) parameters: mapping, nested ones included."""
    return [leaf for spec in tree.values()
            for leaf in (leaves(spec["parameters"]) if "parameters" in spec else [spec])]


def grid_points(spec: dict) -> int:
    """How many values grid search takes for a GRID_SPEC spec."""
    if "value" in spec:
        return 1
    if "values" in spec:
        return len(spec["values"])
    if "q" in spec:
        return round((spec["max"] - spec["min"]) / spec["q"])
    return spec["max"] - spec["min"] + 1


def assert_plan(code, out: str, err: str, raw: dict, name: str = "sweep") -> None:
    """Exit 0 and the dry-run plan of ``raw``: its method and parameter count, then its first 2 trials' commands."""
    assert code == 0 and "Traceback" not in err, err
    name = raw.get("name", name)
    params = leaves(raw["parameters"])
    assert out.startswith(f"sweep {name}: {raw['method']} search over {len(params)} parameter(s)"), out
    trials = 2 if raw["method"] != "grid" else min(2, math.prod(map(grid_points, params)))
    command = raw.get("command") or []
    program = command[command.index("-m") + 1] if "-m" in command else "lit_gen.fit"  # the trial program
    commands = [line for line in out.splitlines() if line.startswith(f"  python -m {program} ")]
    assert "first 2 trial(s)" in out and len(commands) == trials, out
    assert all(f"--run-id {name}-00{i} " in command for i, command in enumerate(commands)), out


def check_plan_or_one_line(text: str) -> None:
    code, out, err = dry_run(text)
    assert "Traceback" not in err, err
    if code == 0:
        assert out.startswith("sweep ") and "trial(s)" in out, out
    else:
        assert_one_error_line(code, err)


@fuzz(100)
@given(VALID)
@example({"method": "grid", "parameters": {"lr": {"values": [1e-4, 1e-3]},
                                           "model": {"parameters": {"beta": {"value": 1}}}},
          "command": COMMAND, "metric": {"name": "val/loss", "goal": "minimize"}})
def test_valid_sweep_files_give_their_plan(raw):
    code, out, err = dry_run(yaml.safe_dump(raw, sort_keys=False))
    assert_plan(code, out, err, raw)


@fuzz(100)
@given(VALID, st.sampled_from(sorted(MISTAKES)))
def test_one_mistake_in_a_valid_sweep_file_gives_one_line_naming_it(raw, mistake):
    make, message = MISTAKES[mistake]
    code, _, err = dry_run(yaml.safe_dump(make(raw), sort_keys=False))
    assert_one_error_line(code, err)
    assert message in err, (mistake, err)


@fuzz(150)
@given(ANYTHING)
@example({"method": "random", "parameters": {"lr": {"distribution": "log_uniform", "min": 0, "max": 1000}}})
@example({"method": "random", "parameters": {"lr": {"min": -1e308, "max": 1e308}}})
@example({"method": "grid", "parameters": {"n": {"min": 0, "max": 10**12}}})
@example({"method": "grid", "parameters": {"x": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 1e-300}}})
@example({"method": "random", "parameters": {"model": {"parameters": {"beta": {"value": float("nan")}}}}})
@example({"method": "random", "parameters": {"lr": {"values": [0.1, float("inf")]}}})
@example({"method": "random", "parameters": {"lr": {"distribution": "q_normal", "mu": 0, "sigma": 1e300, "q": 1e-300}}})
def test_random_sweep_files_give_a_plan_or_one_line(raw):
    # Whether these are valid is not known here (the tests above pin both sides); they must not crash.
    check_plan_or_one_line(yaml.safe_dump(raw, sort_keys=False))


def cut(raw: dict, length: int) -> str:
    """The first ``length`` characters of ``raw`` as YAML."""
    return yaml.safe_dump(raw, sort_keys=False)[:length]


@fuzz(60)
@given(st.one_of(st.tuples(st.text(max_size=80), st.none()),
                 st.tuples(VALID, st.integers(0, 400)).map(lambda s: (cut(s[0], s[1]), s[0])),
                 st.tuples(ANYTHING, st.integers(0, 400)).map(lambda s: (cut(s[0], s[1]), None))))
@example(("method: grid\nparameters: {lr: {values: [1, 2]\n", None))
@example(("method: random\nparameters:\n  lr: {value: 1}\n\tbad: tab\n", None))
@example(("!!python/object:os.system x", None))
def test_broken_yaml_gives_a_plan_or_one_line(case):
    """Text that is not YAML is one error line; a valid file cut where it still reads whole gives its plan."""
    text, whole = case
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        code, _, err = dry_run(text)
        assert_one_error_line(code, err)
        assert "not valid YAML" in err, err
        return
    if whole is not None and loaded == whole:
        assert_plan(*dry_run(text), whole)
    else:
        check_plan_or_one_line(text)


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_gives_its_plan(path):
    raw = yaml.safe_load(path.read_text())
    code, out, err = call(sweep.main, [str(path), "--dry-run", "--count", "2"])
    assert_plan(code, out, err, raw, name=path.stem)
    assert f"store: runs/sweeps/{raw.get('name', path.stem)} (not created by --dry-run)" in out


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


@pytest.mark.slow  # interpreter start-ups; sample's and fit's are forked with torch and Lightning imported
def test_the_real_commands_exit_2_with_one_line(tmp_path, cli, launcher):
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: grid\nparameters: {lr: {values: [1, .inf]}}\n")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(bytes(range(256)) * 3)

    def forked(module, *args):
        return launcher.run(module, *args, env=cli_env())

    for start, module, args in [
        (cli, "lit_gen.sweep", [str(broken), "--dry-run"]),  # imports neither: a new interpreter is quick
        (forked, "lit_gen.sample", ["--ckpt", str(junk), "--device", "cpu"]),
        (forked, "lit_gen.fit", ["--config", "configs/vae_digits.yaml", "--resume", str(junk), "logger.wandb=false"]),
    ]:
        result = start(module, *args)
        assert_one_error_line(result.returncode, result.stderr)
    plan = cli("lit_gen.sweep", "sweeps/vae_mnist_beta.yaml", "--dry-run", "--count", "2")
    assert plan.returncode == 0 and "first 2 trial(s)" in plan.stdout, plan.stderr
