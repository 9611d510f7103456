"""lit_gen.slurm and the slurm/ scripts.

``submit --dry-run`` needs no cluster. The tests marked ``slurm`` run jobs on a real one: the one-node
SLURM of ``<repo>/../shared/slurm-local`` (started here when it is not running): DDP over srun, a
requeued job that resumes exactly, and a sweep as a job array. Without a cluster they skip with the
reason, except under CI (``CI=true``), where they fail: CI must run them, not report them skipped. Jobs use CPU tasks
(LIT_GEN_ACCELERATOR=cpu: DDP over gloo); the 2-core machine runs one 2-task job at a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from lit_gen.cli import run_main
from lit_gen.slurm import main as slurm_main
from tests.conftest import REPO

START = REPO.parent / "shared" / "slurm-local" / "start.sh"
STEPS = 60  # 6 epochs of 10 steps: 1,374 training digits / (64 per task x 2 tasks); time to interrupt
SETTINGS = [f"trainer.max_steps={STEPS}", "trainer.deterministic=true", "run.checkpoint_every_n_steps=5",
            "run.num_samples=4"]


def cluster_is_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.split()
    return any(state in ("idle", "mixed", "allocated") for state in states)


def in_ci() -> bool:
    """Whether this is a CI run (``CI=true``, as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def no_cluster(reason: str) -> NoReturn:
    """Skip a SLURM test with ``reason``; under CI fail instead, so a broken cluster cannot pass as a skip."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the SLURM tests must run; .ci/run starts the cluster before the tests)",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster():
    """A running SLURM cluster, started from shared/slurm-local when needed."""
    if cluster_is_up():
        return
    if not START.is_file():
        no_cluster(f"no SLURM cluster running and no {START} to start one")
    if os.geteuid() != 0:
        no_cluster(f"no SLURM cluster running, and {START} needs root to start one")
    try:
        proc = subprocess.run([str(START), "start"], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        no_cluster(f"{START} start did not finish in 600 s")
    if proc.returncode != 0 or not cluster_is_up():
        no_cluster(f"{START} start could not bring up SLURM: {(proc.stdout + proc.stderr)[-500:]}")


def test_without_a_cluster_ci_fails_and_elsewhere_skips(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no sinfo here.*CI=true"):
        no_cluster("no sinfo here")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no sinfo here"):
        no_cluster("no sinfo here")


def sbatch(out: Path, *flags: str) -> str:
    """Submit fit.sbatch with 2 CPU tasks on configs/vae_digits.yaml; returns the job id."""
    env = {**os.environ, "LIT_GEN_ACCELERATOR": "cpu", "LIT_GEN_PYTHON": sys.executable, "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = ["sbatch", "--parsable", "--job-name=lit_gen-test", "--ntasks-per-node=2", "--cpus-per-task=1", "--gres=none",
           f"--output={out}/%x-%j.out", *flags, "slurm/fit.sbatch", "configs/vae_digits.yaml", *SETTINGS,
           f"run.output_dir={out}/runs"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    return proc.stdout.strip().split(";")[0]


def job_info(job_id: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def wait_for(job_id: str, timeout: float = 600) -> None:
    """Wait until the job (every task of an array) has left the queue; polls faster than ``sbatch --wait``."""
    deadline = time.time() + timeout
    while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=30).stdout.strip():
        assert time.time() < deadline, f"job {job_id} still queued or running after {timeout} s"
        time.sleep(0.5)


def checkpoint_step(path: Path) -> int:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except Exception:  # absent, or being replaced right now
        return -1


def wandb_run_ids(run: Path) -> list[str]:
    return [p.name.rsplit("-", 1)[-1] for p in sorted((run / "wandb").glob("offline-run-*"))]


def submit_dry_run(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run_main(slurm_main, ["submit", "--config", "configs/vae_digits.yaml", *args, "--dry-run"])
    out = capsys.readouterr()
    return info.value.code, out.out + out.err


def sbatch_lines(text: str) -> dict[str, str]:
    """The active #SBATCH options of a script: {"--nodes": "2", ...}; a flag twice fails."""
    lines = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]
    flags = [line.split("=", 1)[0] for line in lines]
    assert len(flags) == len(set(flags)), lines
    return dict((line.split("=", 1) + [""])[:2] for line in lines)


def test_dry_run_prints_the_job_with_one_task_per_gpu(capsys):
    code, out = submit_dry_run(capsys, "--nodes", "2", "--gpus-per-node", "4", "--time", "12:00:00",
                               "--partition", "gpu", "--account", "proj", "model.beta=0.5")
    assert code == 0, out
    command = next(line for line in out.splitlines() if line.startswith("sbatch "))
    assert command.endswith("configs/vae_digits.yaml model.beta=0.5")
    options = sbatch_lines(out)
    assert {k: options[k] for k in ("--nodes", "--ntasks-per-node", "--gres", "--time", "--partition", "--account")} == {
        "--nodes": "2", "--ntasks-per-node": "4", "--gres": "gpu:4", "--time": "12:00:00",
        "--partition": "gpu", "--account": "proj"}
    # What makes a job survive its time limit is kept from slurm/fit.sbatch.
    assert options["--signal"] == "USR1@90" and "--requeue" in options and options["--open-mode"] == "append"
    assert "srun --kill-on-bad-exit=1" in out and "trainer.devices=\"$tasks_per_node\"" in out


def test_dry_run_on_cpu_nodes_asks_for_no_gpu(capsys):
    code, out = submit_dry_run(capsys, "--gpus-per-node", "0", "--tasks-per-node", "2")
    assert code == 0, out
    options = sbatch_lines(out)
    assert "--gres" not in options and options["--ntasks-per-node"] == "2"
    assert options["--export"] == "ALL,LIT_GEN_ACCELERATOR=cpu"


@pytest.mark.parametrize("args, message", [
    (["--gpus-per-node", "4", "--tasks-per-node", "2"], "tasks per node must equal the GPUs per node"),
    (["--gpus-per-node", "4", "trainer.devices=2"], "trainer.devices=2 contradicts the job"),
    (["--nodes", "2", "--trainer.num_nodes", "1"], "trainer.num_nodes=1 contradicts the job"),
    (["--time", "two days"], "not a SLURM time"),
    (["model.latent_dims=4"], "Did you mean 'latent_dim'"),
])
def test_dry_run_refuses_a_job_lightning_would_reject(capsys, args, message):
    code, out = submit_dry_run(capsys, *args)
    assert code == 2 and message in out, out


@pytest.fixture(scope="module")
def ddp_job(cluster, tmp_path_factory):
    """One uninterrupted 2-task DDP job, run to the end with ``sbatch --wait``."""
    out = tmp_path_factory.mktemp("slurm_ddp")
    job_id = sbatch(out)
    wait_for(job_id)
    log = (out / f"lit_gen-test-{job_id}.out").read_text()
    return out / "runs" / "vae_digits" / f"slurm-{job_id}", log + f"\nstate: {job_info(job_id).get('JobState')}"


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_trains_with_ddp_over_both_tasks(ddp_job):
    run, log = ddp_job
    assert "training exited with status 0" in log and "state: COMPLETED" in log, log[-3000:]
    # Lightning's own line from each rank: two processes form one process group.
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-3000:]
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == STEPS
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "summary.json").is_file()
    # Each task reads its half of the data: 10 steps an epoch at 64 images per task (global batch 128).
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in rows] == [(epoch, 10 * (epoch + 1)) for epoch in range(6)]
    assert wandb_run_ids(run) == [(run / "wandb_id.txt").read_text().strip()]


@pytest.mark.slurm
@pytest.mark.slow
def test_requeued_job_resumes_where_it_stopped_and_matches_the_uninterrupted_job(ddp_job, tmp_path):
    reference, _ = ddp_job
    job_id = sbatch(tmp_path)
    run = tmp_path / "runs" / "vae_digits" / f"slurm-{job_id}"
    log_file = tmp_path / f"lit_gen-test-{job_id}.out"

    # Warn the job as SLURM does before its time limit, once it is well into training.
    deadline = time.time() + 600
    while checkpoint_step(run / "checkpoints" / "last.ckpt") < 10:
        assert time.time() < deadline and job_info(job_id).get("JobState") in ("PENDING", "RUNNING"), \
            log_file.read_text()[-3000:] if log_file.is_file() else job_info(job_id)
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True, timeout=30)

    # The job requeues itself; release it from the requeue delay until it has run again to the end.
    while True:
        info = job_info(job_id)
        if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            break
        assert time.time() < deadline, f"job {job_id} still {info.get('JobState')}"
        if info.get("JobState") == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True, timeout=30)
        time.sleep(1)
    log = log_file.read_text()
    assert info["JobState"] == "COMPLETED" and info.get("Restarts") == "1", log[-3000:]

    saved = re.search(r"SLURM time limit near: saved step (\d+)", log)
    resumed = re.search(r"SLURM job \S+ continues at step (\d+)", log)
    assert saved and resumed, log[-3000:]
    assert int(saved.group(1)) == int(resumed.group(1)) and 10 <= int(saved.group(1)) < STEPS
    assert "restart 1 on" in log and log.count("training exited with status 0") == 1

    a = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for i, (x, y) in enumerate(zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values())):
        assert torch.equal(x["exp_avg_sq"], y["exp_avg_sq"]), i

    # One W&B run throughout: the requeued job reopened the run it started (one folder per start).
    ids = wandb_run_ids(run)
    assert len(ids) == 2 and set(ids) == {(run / "wandb_id.txt").read_text().strip()}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(6))  # each epoch once, none lost or repeated


@pytest.mark.slurm
def test_submit_writes_a_script_sbatch_accepts(cluster, capsys, tmp_path):
    code, out = submit_dry_run(capsys, "--gpus-per-node", "0", "--tasks-per-node", "2", "--cpus-per-task", "1")
    assert code == 0, out
    script = tmp_path / "job.sbatch"
    script.write_text(out[out.index("#!/bin/bash"):])
    proc = subprocess.run(["sbatch", "--test-only", str(script), "configs/vae_digits.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "to start at" in proc.stderr, proc.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_sweep_array_tasks_each_run_one_different_trial(cluster, tmp_path):
    env = {**os.environ, "LIT_GEN_ACCELERATOR": "cpu", "LIT_GEN_PYTHON": sys.executable, "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    store = tmp_path / "store"
    proc = subprocess.run(["sbatch", "--parsable", "--array=0-1", "--gres=none", "--cpus-per-task=1",
                           f"--output={tmp_path}/%x-%A_%a.out", "slurm/sweep_agent.sbatch",
                           "sweeps/vae_digits_smoke.yaml", str(store)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    wait_for(proc.stdout.strip().split(";")[0])
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("*.out")))
    trials = json.loads((store / "summary.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"], trials
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 2  # two different grid points
    assert logs.count("this agent ran 1 trial(s)") == 2
