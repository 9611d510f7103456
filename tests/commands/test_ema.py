"""python -m lit_gen.ema: a run trained with power EMAs gives the average of any length afterwards, as a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from lit_gen.checkpoints import load_model
from lit_gen.cli import EXIT_USER_ERROR, run_main
from lit_gen.nn.post_hoc_ema import combine, gamma_of, synthesis

POWER = "model.ema={name: power, sigma_rels: [0.05, 0.10], snapshot_every: 4}"


@pytest.fixture(scope="module")
def power_run(tmp_path_factory):
    """A short digits diffusion run whose power EMAs were snapshotted every 4 steps (24 steps: 6 snapshots)."""
    from lit_gen import fit

    out = tmp_path_factory.mktemp("ema_runs")
    code = fit.main(["--config", "configs/quickstart.yaml", POWER, "model.base_channels=8", "model.attention_resolutions=[]",
                     "trainer.max_steps=24", "trainer.max_epochs=-1", "trainer.limit_val_batches=1", "logger.wandb=false",
                     "trainer.accelerator=cpu", "run.num_samples=4", "eval.report=false", f"run.output_dir={out}",
                     "--run-id", "power"])
    assert code == 0
    return out / "quickstart" / "power"


def run_ema(argv: list[str], capsys) -> tuple[int, str, str]:
    from lit_gen.commands.ema import main

    with pytest.raises(SystemExit) as done:
        run_main(main, argv)
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_the_run_kept_a_snapshot_of_every_profile_every_4_steps(power_run):
    from lit_gen.callbacks.ema_snapshots import read_snapshots

    snapshots = read_snapshots(power_run / "ema")
    assert [s["step"] for s in snapshots] == [4, 8, 12, 16, 20, 24]
    assert [p["sigma_rel"] for p in snapshots[-1]["profiles"]] == [0.05, 0.10]
    # The last snapshot is the averages the checkpoint holds at the end.
    model = load_model(power_run / "checkpoints" / "last.ckpt")
    for index, profile in enumerate(snapshots[-1]["profiles"]):
        for key, value in model.ema.profiles[index].state_dict().items():
            assert torch.equal(profile["state_dict"][key], value), key


def test_a_synthesised_length_is_a_checkpoint_that_samples_and_says_where_it_came_from(power_run, tmp_path, capsys):
    from lit_gen.callbacks.ema_snapshots import read_snapshots

    code, out, err = run_ema([str(power_run), "--sigma-rel", "0.07,0.05", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    path = tmp_path / "sigma_rel_0.070_step_000000024.ckpt"
    assert "profile" in out and path.is_file()
    model = load_model(path)
    assert model.hparams.ema["name"] == "post_hoc" and model.hparams.ema["sigma_rel"] == 0.07
    assert model.hparams.ema["step"] == 24 and model.hparams.ema["sources"] == 12
    state = torch.load(path, weights_only=True)
    assert len(state["post_hoc_ema"]["weights"]) == 12 and len(state["post_hoc_ema"]["snapshots"]) == 6
    # Its EMA weights are the least-squares combination of the snapshots, recomputed here.
    snapshots = read_snapshots(power_run / "ema")
    plan = synthesis([(s["step"], p["gamma"]) for s in snapshots for p in s["profiles"]], 24, gamma_of(0.07))
    expected = combine([p["state_dict"] for s in snapshots for p in s["profiles"]], plan.weights)
    for key, value in model.ema.averaged.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 8, 8)
    # A tracked length comes back as that profile's weights.
    tracked = load_model(tmp_path / "sigma_rel_0.050_step_000000024.ckpt")
    for key, value in tracked.ema.averaged.state_dict().items():
        torch.testing.assert_close(value, snapshots[-1]["profiles"][0]["state_dict"][key], rtol=0, atol=1e-6)


def test_a_length_the_snapshots_cannot_reach_is_refused_in_one_line(power_run, tmp_path, capsys):
    code, _, err = run_ema([str(power_run), "--sigma-rel", "0.07,0.25", "--out", str(tmp_path)], capsys)
    assert code == EXIT_USER_ERROR and len(err.strip().splitlines()) == 1
    assert "sigma_rel 0.25 (profile" in err and "they reach" in err
    assert not list(tmp_path.glob("*.ckpt"))  # nothing written when one length is refused


def test_a_run_without_power_snapshots_says_how_to_keep_them(tmp_path_factory, capsys):
    from tests.eval_helpers import digits_run

    run = digits_run(tmp_path_factory)  # a VAE run: no ema/ folder
    code, _, err = run_ema([str(run), "--sigma-rel", "0.05"], capsys)
    assert code == EXIT_USER_ERROR and "name: power" in err


def test_evaluate_measures_every_length_and_a_sweep_trial_writes_its_metric(power_run, tmp_path, tmp_path_factory, capsys):
    from tests.eval_helpers import digits_classifier

    classifier, _ = digits_classifier(tmp_path_factory)
    code, out, err = run_ema([str(power_run), "sigma_rel=0.06", f"run.output_dir={tmp_path / 'trials'}",
                              "logger.group=s1", "--run-id", "t0", "--out", str(tmp_path / "ckpts"), "--evaluate",
                              "--num-samples", "40", "--batch-size", "40", "--feature", f"classifier:{classifier}",
                              "--device", "cpu"], capsys)
    assert code == 0, err
    assert "FID-digits-classifier" in out
    rows = json.loads((tmp_path / "ckpts" / "fid_vs_sigma_rel.json").read_text())
    assert [r["sigma_rel"] for r in rows] == [0.06] and rows[0]["value"] > 0 and rows[0]["generated_count"] == 40
    trial = tmp_path / "trials" / "ema_quickstart" / "t0"
    metrics = json.loads((trial / "metrics.jsonl").read_text().splitlines()[-1])
    summary = json.loads((trial / "summary.json").read_text())
    assert metrics["fid"] == rows[0]["value"] == summary["metrics"]["fid"] and summary["sigma_rel"] == 0.06


def test_the_arguments_a_sweep_trial_gets_parse_in_the_engines_order():
    from lit_gen.commands.ema import parse_args, sweep_arguments

    # python -m lit_gen.sweep builds: <command's fixed args> --run-id <trial> <parameters> <extras>.
    args = parse_args(["runs/x/y", "--evaluate", "--num-samples", "10", "--run-id", "s-000", "sigma_rel=0.03",
                       "run.output_dir=store/runs", "logger.group=s"])
    assert args.run == "runs/x/y" and args.run_id == "s-000" and args.evaluate and args.num_samples == 10
    assert sweep_arguments(args.sweep) == {"sigma_rel": "0.03", "run.output_dir": "store/runs", "logger.group": "s"}
    with pytest.raises(Exception, match="the sweep's parameter must be named sigma_rel"):
        sweep_arguments(["decay=0.9"])
