"""lit_gen.fit end to end: the run folder, resume, and one clear message for every bad input."""

from __future__ import annotations

import json

import pytest
import torch

from lit_gen.checkpoints import load_model
from lit_gen.cli import run_main
from lit_gen.fit import environment_run_id, main

QUICK = ["trainer.max_epochs=2", "logger.wandb=false", "trainer.accelerator=cpu", "run.num_samples=16"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("runs")
    proc = run_cli("lit_gen.fit", "--config", "configs/vae_digits.yaml", *QUICK, f"run.output_dir={out}", "--run-id", "first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "vae_digits" / "first", proc


def test_run_folder_has_everything_a_user_looks_for(finished_run):
    run, proc = finished_run
    for name in ("config.yaml", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "samples/final.png",
                 "metrics.jsonl", "metrics.csv", "summary.json"):
        assert (run / name).is_file(), name
    assert str(run) in proc.stdout and "samples" in proc.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert {"train/loss", "val/loss", "val/elbo", "val/kl"} <= set(rows[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == rows[-1]["step"] and summary["model"] == "vae"


def test_checkpoint_alone_rebuilds_an_identical_model(finished_run):
    run, _ = finished_run
    model = load_model(run / "checkpoints" / "last.ckpt")
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert model.hparams["latent_dim"] == 8
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    g = torch.Generator().manual_seed(0)
    assert model.sample(4, generator=g).shape == (4, 1, 8, 8)


def test_resume_auto_continues_the_same_run(finished_run, cli, tmp_path):
    import shutil

    out = tmp_path / "runs"  # a copy of the finished run: resuming it must not change what other tests read
    run = out / "vae_digits" / "first"
    shutil.copytree(finished_run[0], run)
    steps_before = json.loads((run / "summary.json").read_text())["global_step"]
    more = [q for q in QUICK if not q.startswith("trainer.max_epochs")] + ["trainer.max_epochs=3"]
    proc = cli("lit_gen.fit", "--config", "configs/vae_digits.yaml", *more, f"run.output_dir={out}",
               "--run-id", "first", "--resume", "auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert json.loads((run / "summary.json").read_text())["global_step"] == steps_before * 3 // 2
    csv_epochs = {line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert csv_epochs - {""} == {"0", "1", "2"}, "the CSV log keeps the rows written before the resume"


def fit_exit(args, capsys):
    with pytest.raises(SystemExit) as info:
        run_main(main, args)
    captured = capsys.readouterr()
    return info.value.code, captured.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["model.betaa=1"], "model.betaa: unknown key for VAE"),
        (["model.beta=-1"], "model.beta: expected a number >= 0, got -1"),
        (["model.lr=-0.001"], "model.lr: expected a number > 0, got -0.001"),
        (["data.name=mnist", "data.root=/nonexistent"], "/nonexistent"),
        (["trainer.max_epochs=many"], "trainer.max_epochs"),
    ],
)
def test_bad_input_gives_one_message_exit_2_and_no_run_folder(tmp_path, capsys, extra, message):
    code, err = fit_exit(["--config", "configs/vae_digits.yaml", f"run.output_dir={tmp_path}", *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a failed start must not leave a run folder behind"


def test_malformed_yaml_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    code, err = fit_exit(["--config", str(bad)], capsys)
    assert code == 2 and "malformed YAML" in err


def test_an_existing_run_is_never_overwritten(finished_run, capsys):
    run, _ = finished_run
    code, err = fit_exit(["--config", "configs/vae_digits.yaml", f"run.output_dir={run.parent.parent}",
                          "--run-id", "first", "--resume", "never"], capsys)
    assert code == 2 and "already exists" in err


def test_a_fit_leaves_the_command_line_and_the_environment_as_it_found_them(tmp_path, capsys):
    import os
    import sys

    argv, environ = list(sys.argv), dict(os.environ)
    with pytest.raises(SystemExit) as info:
        run_main(main, ["--config", "configs/vae_digits.yaml", "trainer.max_epochs=1", "logger.wandb=false",
                        "run.num_samples=0", f"run.output_dir={tmp_path}"])
    assert info.value.code == 0
    # Later fits and submitted jobs in this process would otherwise reuse this run's folder.
    # (Lightning's seed_everything exports PL_GLOBAL_SEED / PL_SEED_WORKERS for its workers: not ours.)
    ours = {k: v for k, v in os.environ.items() if not k.startswith("PL_")}
    assert sys.argv == argv and ours == {k: v for k, v in environ.items() if not k.startswith("PL_")}


def test_ddp_workers_are_told_the_run_folder_and_the_resume_decision_on_their_command_line(tmp_path):
    import sys

    from lit_gen.fit import parse_args, worker_command

    saved = list(sys.argv)
    given = ["--config", "configs/vae_digits.yaml", "--resume", "never", "model.beta=0.5", "--model.latent_dim", "4"]
    with worker_command(given, "20260101-abc", None):
        args, overrides = parse_args(sys.argv[1:])  # what a worker parses
        # A worker must open rank 0's fresh folder (which exists by then), not refuse it or make another.
        assert (args.run_id, args.resume, args.config) == ("20260101-abc", "auto", "configs/vae_digits.yaml")
        assert overrides == ["model.beta=0.5", "--model.latent_dim", "4"]
    assert sys.argv == saved
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with worker_command(["--config", "c.yaml", "--run-id", "old"], "run", checkpoint):
        args, _ = parse_args(sys.argv[1:])
        assert (args.run_id, args.resume) == ("run", str(checkpoint))  # the very checkpoint rank 0 resumes
    assert sys.argv == saved


def test_print_config_shows_the_resolved_config(capsys):
    with pytest.raises(SystemExit) as info:
        run_main(main, ["--config", "configs/vae_digits.yaml", "--print-config", "--model.beta", "0.5"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "beta: 0.5" in out and "likelihood: bernoulli" in out


def test_cluster_and_agent_run_ids():
    assert environment_run_id({"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "fit"}) == "slurm-42"
    assert environment_run_id({"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "bash"}) is None
    assert environment_run_id({"SLURM_JOB_ID": "43", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3",
                               "SLURM_JOB_NAME": "fit"}) == "slurm-40_3"
    assert environment_run_id({"WANDB_SWEEP_ID": "s", "WANDB_RUN_ID": "abc"}) == "wandb-abc"
    assert environment_run_id({}) is None


def test_summary_counts_the_trained_network_and_lists_the_ema_copy_apart(tmp_path, capsys):
    # A DDPM holds its U-Net twice (the EMA average); its size is the U-Net the optimizer trains.
    code = main(["--config", "configs/ddpm_digits.yaml", "model.base_channels=8", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger.wandb=false",
                 "trainer.accelerator=cpu", "run.num_samples=4", "run.sample_options={steps: 2}",
                 f"run.output_dir={tmp_path}", "--run-id", "counts"])
    assert code == 0
    run = tmp_path / "ddpm_digits" / "counts"
    summary = json.loads((run / "summary.json").read_text())
    model = load_model(run / "checkpoints" / "last.ckpt")
    unet = sum(p.numel() for p in model.unet.parameters())
    assert summary["parameters"] == unet
    assert summary["parameter_counts"] == {"trained": unet, "ema": unet, "frozen": 0}
    out = capsys.readouterr().out
    assert f"({unet:,} parameters (+{unet:,} EMA copy))" in out
    assert f"{2 * unet:,}" not in out
    report_text = (run / "report.md").read_text() if (run / "report.md").is_file() else ""
    assert f"{2 * unet:,}" not in report_text
