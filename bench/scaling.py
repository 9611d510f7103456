"""Training throughput per process as DDP grows from 1 to N CPU processes (gloo).

    python bench/scaling.py --out bench/results/scaling_cpu.json
    python bench/scaling.py --configs configs/vae_digits.yaml:1000 --processes 1 2 4

``--configs`` takes ``CONFIG[:STEPS]``: a small model needs more timed steps than a big one for a
measurement of a few seconds.

Each measurement is a fresh ``lit_gen`` model and datamodule built from a config (as
``lit_gen.fit`` builds them) trained for ``--warmup`` + ``--steps`` optimizer steps with
``data.batch_size`` images per process (weak scaling: the global batch is batch x processes, as on a
cluster). Only the last ``--steps`` are timed; validation, checkpoints and loggers are off. Each
process gets ``--threads`` PyTorch threads, so 1 process x 1 thread is the per-core baseline.

Reported per config and process count: images/s in total and per process (the fastest of
``--repeats`` runs), and the scaling efficiency (per-process images/s divided by that of 1 process). On a machine with fewer cores than
processes x threads the processes share cores and the efficiency says more about the machine than
about DDP: the record keeps the core count and the load average so the numbers can be judged.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import load_average, machine_info  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["configs/vae_digits.yaml:600", "configs/ddpm_digits.yaml:60"],
                        help="CONFIG[:STEPS] to measure (STEPS defaults to --steps)")
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2], help="DDP process counts to measure")
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps (unless CONFIG:STEPS)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=64, help="images per process and step")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads per process")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the fastest is kept")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------- worker
def worker(args: argparse.Namespace) -> None:
    """One measurement (config, process count); Lightning reruns this command for ranks > 0."""
    import lightning as L
    import torch

    from lit_gen.config import load_config
    from lit_gen.fit import build

    torch.set_num_threads(args.threads)
    (config,), (devices,) = args.configs, args.processes

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.start = self.end = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == args.warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module) -> None:
            self.end = time.perf_counter()

    L.seed_everything(0, verbose=False)
    cfg = load_config(config, [f"data.batch_size={args.batch_size}"])
    datamodule, model = build(cfg)
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_steps=args.warmup + args.steps, max_epochs=-1, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, datamodule=datamodule)
    if trainer.is_global_zero:
        from lit_gen.models.parameters import count_parameters

        seconds = timer.end - timer.start
        total = args.steps * args.batch_size * devices / seconds
        print("RESULT " + json.dumps({
            "config": config, "processes": devices, "parameters": count_parameters(model).trained,
            "parameter_counts": count_parameters(model).as_dict(),
            "global_batch": args.batch_size * devices, "timed_steps": args.steps, "seconds": round(seconds, 3),
            "images_per_s": round(total, 1), "images_per_s_per_process": round(total / devices, 1),
            "steps_per_s": round(args.steps / seconds, 2)}), flush=True)


# ---------------------------------------------------------------------------------------- driver
def measure(args: argparse.Namespace, config: str, steps: int, processes: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--configs", config,
               "--processes", str(processes), "--steps", str(steps), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    # Off SLURM even when run inside a job: this measures Lightning's own launcher.
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"measurement failed ({config}, {processes} processes):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def machine() -> dict:
    """The driver's machine facts (bench.common), without its own torch thread count: the measured
    processes get ``--threads`` each (in ``settings``)."""
    facts = {"hostname": platform.node(), **machine_info(), "load_average_start": load_average()}
    facts.pop("torch_threads")
    return facts


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    record = {
        "command": "python bench/scaling.py " + " ".join(argv),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {"python": platform.python_version(),
                     **{name: metadata.version(name) for name in ("torch", "lightning")}},
        "settings": {"backend": "gloo", "accelerator": "cpu", "threads_per_process": args.threads,
                     "batch_size_per_process": args.batch_size, "warmup_steps": args.warmup,
                     "repeats": args.repeats, "kept": "fastest repeat"},
        "results": [],
    }
    for entry in args.configs:
        config, _, steps = entry.partition(":")
        steps = int(steps) if steps else args.steps
        base = None
        for processes in args.processes:
            # Other programs on a shared machine only ever slow a run down: keep the fastest.
            runs = [measure(args, config, steps, processes) for _ in range(args.repeats)]
            result = max(runs, key=lambda r: r["images_per_s"])
            result["images_per_s_all_repeats"] = [r["images_per_s"] for r in runs]
            base = base or result["images_per_s_per_process"]
            result["efficiency"] = round(result["images_per_s_per_process"] / base, 3)
            record["results"].append(result)
            print(f"{config:<28} {processes} process(es): {result['images_per_s']:>9.1f} images/s, "
                  f"{result['images_per_s_per_process']:>8.1f} per process, efficiency {result['efficiency']:.2f}", flush=True)
    record["machine"]["load_average_end"] = load_average()
    record["headline"] = {f"{Path(r['config']).stem}, {r['processes']} process(es)": (
        f"{r['images_per_s']:.1f} images/s, {r['images_per_s_per_process']:.1f} per process, efficiency {r['efficiency']:.2f}")
        for r in record["results"]}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
