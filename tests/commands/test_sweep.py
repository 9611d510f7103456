"""``python -m lit_gen.sweep``: clear errors, dry runs, failed trials recorded, and a real end-to-end sweep."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lit_gen.sweeping.agent import SweepAgent
from lit_gen.sweeping.space import load_sweep
from lit_gen.sweeping.store import FAILED
from tests.sweeping.fake_program import write_sweep

REPO = Path(__file__).resolve().parents[2]


def test_a_bad_sweep_file_is_one_line_on_stderr_and_exit_code_2(tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nprogram: t.py\nparameters:\n  lr: {distribution: uniform, min: 1e-4, max: 0.1}\n")
    result = cli("lit_gen.sweep", str(bad), "--count", "1", "--store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: parameters.lr.min: '1e-4' was read as a string: PyYAML (YAML 1.1) needs a dot and a "
        "signed exponent in a float. Write 1.0e-4 instead of 1e-4.")
    assert not (tmp_path / "store").exists()


def test_an_endless_search_without_count_is_refused(tmp_path, cli):
    sweep = write_sweep(tmp_path, "  quality:\n    min: 0.0\n    max: 1.0\n", method="random")
    result = cli("lit_gen.sweep", str(sweep), "--store", str(tmp_path / "store"))
    assert result.returncode == 2 and "never ends by itself: give --count N" in result.stderr


def test_dry_run_prints_the_commands_and_touches_nothing(tmp_path, cli):
    result = cli("lit_gen.sweep", "sweeps/vae_digits_smoke.yaml", "--dry-run", "--count", "2",
                 "--store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr
    assert "grid search over 3 parameter(s), 3 points" in result.stdout
    assert ("-m lit_gen.fit --config configs/vae_digits.yaml --run-id vae_digits_smoke-001 "
            "'model={'\"'\"'beta'\"'\"': 1.0, '\"'\"'latent_dim'\"'\"': 4}' trainer.max_epochs=2") in result.stdout
    assert not (tmp_path / "store").exists()


def test_a_failing_trial_is_recorded_with_its_log_and_the_sweep_goes_on(tmp_path, cli):
    sweep = write_sweep(tmp_path, "  fail:\n    values: [1, 0]\n  model:\n    parameters:\n"
                                  "      beta:\n        value: 0.5\n      depth:\n        value: 2\n",
                        args_macro="${args}")
    store = tmp_path / "store"
    result = cli("lit_gen.sweep", str(sweep), "--count", "5", "--store", str(store), "--poll-interval", "0.02")
    assert result.returncode == 0, result.stderr
    summary = json.loads((store / "summary.json").read_text())
    failed, done = summary["trials"]
    assert (failed["state"], done["state"]) == ("failed", "complete")
    assert failed["reason"] == "exit code 1"
    assert summary["best"]["trial_id"] == done["trial_id"] and summary["best"]["value"] == pytest.approx(1 / 3)
    [record] = [t for t in SweepAgent(load_sweep(sweep), store).store.trials() if t.state == FAILED]
    assert "ValueError: the fake trial was told to fail" in record.attrs["log_tail"]
    # A nested parameter reached the program as one dict literal, with the engine's own arguments after it.
    given = json.loads((store / "runs" / "fake" / done["trial_id"] / "args.json").read_text())
    assert given["argv"][:4] == ["--run-id", done["trial_id"], "--fail=0", "--model={'beta': 0.5, 'depth': 2}"]
    assert given["config"]["logger.group"] == summary["sweep_id"]
    assert "the grid is complete (2 points)" in result.stdout
    assert f"best: {done['trial_id']} with val/loss = 0.333333 (minimize)" in result.stdout
    assert (store / "summary.csv").read_text().splitlines()[0] == "trial_id,state,val/loss,iterations,fail,model.beta,model.depth,reason"


def test_sigterm_stops_the_trial_and_frees_its_grid_point(tmp_path):
    sweep = write_sweep(tmp_path, "  quality:\n    values: [0.1, 0.2]\n  sleep:\n    value: 0.4\n  epochs:\n    value: 50\n")
    store = tmp_path / "store"
    command = [sys.executable, "-m", "lit_gen.sweep", str(sweep), "--count", "2", "--store", str(store),
               "--poll-interval", "0.02", "--kill-grace", "5"]
    agent = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    args_files = []
    deadline = time.time() + 60
    while not args_files and time.time() < deadline:
        args_files = list(store.glob("runs/fake/*/args.json"))
        time.sleep(0.05)
    pid = json.loads(args_files[0].read_text())["pid"]
    agent.send_signal(signal.SIGTERM)  # what SLURM sends at the time limit
    output = agent.communicate(timeout=60)[0]
    assert agent.returncode == 130, output
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    [trial] = SweepAgent(load_sweep(sweep), store).store.trials()
    assert trial.state == FAILED and trial.released and trial.attrs["reason"] == "the agent was interrupted"
    # The next agent runs the interrupted point again.
    again, _ = SweepAgent(load_sweep(sweep), store).next_trial()
    assert again.params["quality"] == 0.1 and again.grid_index == trial.grid_index


def test_a_trial_that_never_reports_the_metric_fails_with_a_hint(tmp_path):
    sweep = write_sweep(tmp_path, "  quality:\n    values: [0.5]\n")
    sweep.write_text(sweep.read_text().replace("name: val/loss", "name: val/los"))
    agent = SweepAgent(load_sweep(sweep), tmp_path / "store", poll_interval=0.02)
    [trial] = agent.run(1).trials
    assert trial.state == FAILED and "never reported 'val/los'" in trial.attrs["reason"]
    assert "it reports: epoch, step, val/loss" in trial.attrs["log_tail"]


def test_an_agent_stops_after_consecutive_failures(tmp_path):
    sweep = write_sweep(tmp_path, "  fail:\n    values: [1, 2, 3, 4]\n")
    agent = SweepAgent(load_sweep(sweep), tmp_path / "store", poll_interval=0.02, max_consecutive_failures=2)
    result = agent.run()
    assert len(result.trials) == 2 and "2 trials failed in a row" in result.reason


def _wandb_records(path: Path):
    """The protobuf records of a W&B transaction log (.wandb): LevelDB's log format after a 7-byte header."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def _wandb_configs(run_dir: Path) -> list[dict]:
    """The config each W&B offline run in a run folder starts with."""
    configs = []
    for path in run_dir.glob("wandb/offline-run-*/run-*.wandb"):
        for record in _wandb_records(path):
            if record.WhichOneof("record_type") == "run":
                configs.append({item.key: json.loads(item.value_json) for item in record.run.config.update})
    return configs


@pytest.mark.slow
def test_end_to_end_three_real_digits_trials(tmp_path, cli):
    store = tmp_path / "store"
    result = cli("lit_gen.sweep", "sweeps/vae_digits_smoke.yaml", "--count", "3", "--store", str(store),
                 env={"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((store / "summary.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["complete"] * 3, summary
    betas = [t["params"]["model.beta"] for t in summary["trials"]]
    assert betas == [0.5, 1.0, 2.0]
    for trial in summary["trials"]:
        run_dir = Path(trial["run_dir"])
        assert run_dir.parent.parent == (store / "runs").resolve() and run_dir.name == trial["trial_id"]
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 2 and trial["iterations"] == 2  # trainer.max_epochs=2 reached the trial
        resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert resolved["model"]["beta"] == trial["params"]["model.beta"] and resolved["model"]["latent_dim"] == 4
        [wandb_config] = _wandb_configs(run_dir)
        assert wandb_config["model"]["beta"] == trial["params"]["model.beta"]
        assert wandb_config["model"]["latent_dim"] == 4
        assert wandb_config["logger"]["group"] == summary["sweep_id"]
    best = min(summary["trials"], key=lambda t: t["value"])
    assert summary["best"]["trial_id"] == best["trial_id"]
    assert summary["best"]["command"].startswith("python -m lit_gen.fit --config configs/vae_digits.yaml")
