"""Regenerate every record in bench/results/ (``make bench``), one benchmark after another, then the README tables.

    python -m bench.run_all                 # every record, quick settings where a benchmark has them
    python -m bench.run_all --full          # every record at its full settings (hours on 2 CPU cores)
    python -m bench.run_all --only overhead memory
    python -m bench.run_all --gpu           # only the GPU record (bench/gpu.py; says so and exits 0 without a GPU)
    python -m bench.run_all --table         # only rebuild the README tables from bench/results/*.json

Each benchmark runs as its own process, never two at once, and writes ``bench/results/<record>.json``;
one that fails is reported and the others still run. ``bench.sampling --quick`` reuses a lit_gen DDPM
that ``bench.diffusers_peer`` just trained at 8x8; without one it trains the quickstart shortened to
20 epochs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import table
from bench.common import CACHE, REPO, RESULTS, child_env, load_average

#: Every record and the command that makes it: (arguments after ``python``, arguments added for quick settings).
RECORDS: dict[str, tuple[list[str], list[str]]] = {
    "overhead": (["-m", "bench.overhead"], ["--quick"]),
    "dataloading": (["-m", "bench.dataloading"], ["--quick"]),
    "precision": (["-m", "bench.precision"], ["--quick"]),
    "memory": (["-m", "bench.memory"], ["--quick"]),
    "diffusers_peer": (["-m", "bench.diffusers_peer"], ["--quick"]),
    "diffusers_peer_16": (["-m", "bench.diffusers_peer", "--resolution", "16", "--threads", "2"], ["--quick"]),
    "few_step": (["-m", "bench.few_step"], ["--quick"]),
    "few_step_8": (["-m", "bench.few_step", "--runs", "runs/bench/peer"], ["--quick"]),
    "ablations": (["-m", "bench.ablations", "--jobs", "2", "--threads", "1"], ["--quick"]),
    "ablations_conditioning": (["-m", "bench.ablations", "--threads", "1", "--arms",
                                "--arm", "ng8_add=model.conditioning=add;model.norm_groups=8",
                                "--arm", "ng8=model.norm_groups=8", "--keep", "runs/bench/ablations_conditioning"],
                               ["--quick"]),
    # The default sampler of ddpm_digits16, on the checkpoints the conditioning ablation keeps.
    "few_step_16": (["-m", "bench.few_step", "--runs", "runs/bench/ablations_conditioning", "--arms", "recipe", "ng8"],
                    ["--quick"]),
    # The same question on the 8x8 configs (32 groups there: one or two channels per group).
    "ablations_conditioning_8": (["-m", "bench.ablations", "--config", "configs/ddpm_digits.yaml", "--steps", "1260",
                                  "--jobs", "2", "--threads", "1", "--arms", "--arm", "ng8=model.norm_groups=8",
                                  "--arm", "ng8_add=model.conditioning=add;model.norm_groups=8",
                                  "--keep", "runs/bench/ablations_conditioning_8"], ["--quick"]),
    "ablations_conditioning_cond": (["-m", "bench.ablations", "--config", "configs/ddpm_digits_cond.yaml", "--steps", "1260",
                                     "--jobs", "2", "--threads", "1", "--arms", "--arm", "ng8=model.norm_groups=8",
                                     "--arm", "ng8_add=model.conditioning=add;model.norm_groups=8",
                                     "--keep", "runs/bench/ablations_conditioning_cond"], ["--quick"]),
    "ablations_quickstart": (["-m", "bench.ablations", "--config", "configs/quickstart.yaml", "--steps", "1260",
                              "--jobs", "2", "--threads", "1", "--arms",
                              "--arm", "eps=model.objective=ddpm;model.default_sampler={sampler: dpmpp_2m, steps: 10}"],
                             ["--quick"]),
    # 250 images per sampler and seed in batches of 75: 12 interleaved batch pairs over 3 seeds (the time
    # interval needs 10); DDPM-1000 then took 701 s for the 750 images (bench/results/sampling.json).
    "sampling": (["-m", "bench.sampling", "--num-samples", "250", "--batch-size", "75"], ["--quick", "--num-samples", "100", "--batch-size", "25"]),
    "sampling_200ep": (["-m", "bench.sampling", "--epochs", "200", "--num-samples", "250", "--batch-size", "75"], []),
    "vq_codebook": (["-m", "bench.vq_codebook"], ["--quick"]),
    "quantizers": (["-m", "bench.quantizers", "--resume"], ["--quick"]),
    "quantizers_mnist": (["-m", "bench.quantizers", "--dataset", "mnist", "--data-root", "data", "--resume"], ["--quick"]),
    "post_hoc_ema": (["-m", "bench.post_hoc_ema"], ["--quick"]),
    # Hours on 2 cores: quick settings rewrite the record from the last mutmut run (make mutation reruns it).
    "mutation": (["-m", "bench.mutation"], ["--record-only"]),
    "fid_speed": (["bench/fid_speed.py", "--num", "10000"], []),
    "fid_speed_1thread": (["bench/fid_speed.py", "--num", "10000", "--threads", "1"], []),
    "scaling_cpu": (["bench/scaling.py"], []),
}
ORDER = tuple(RECORDS)
PEER_CHECKPOINT = CACHE / "peer" / "lit_gen"


def command_for(name: str, full: bool, out_dir: Path = RESULTS) -> list[str]:
    args, quick = RECORDS[name]
    command = [sys.executable, *args, *([] if full else quick), "--out", str(out_dir / f"{name}.json")]
    if name == "sampling" and not full:
        checkpoints = sorted(PEER_CHECKPOINT.rglob("last.ckpt")) if PEER_CHECKPOINT.is_dir() else []
        command += ["--ckpt", str(checkpoints[-1])] if checkpoints else ["--epochs", "20"]
    return command


def run(name: str, full: bool, out_dir: Path) -> dict:
    command = command_for(name, full, out_dir)
    print(f"\n>>> {' '.join(['python', *command[1:]])}   (load {load_average()})", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=child_env())
    seconds = time.perf_counter() - started
    print(f"<<< {name}: exit {result.returncode} after {seconds:.0f} s", flush=True)
    return {"name": name, "returncode": result.returncode, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full settings instead of --quick (much longer)")
    parser.add_argument("--only", nargs="+", choices=ORDER, help="run only these records")
    parser.add_argument("--gpu", action="store_true", help="only the GPU record (python -m bench.gpu)")
    parser.add_argument("--table", action="store_true", help="only rebuild the README tables")
    parser.add_argument("--out-dir", default=str(RESULTS),
                        help="where the result files go (default bench/results; the README table reads bench/results)")
    args = parser.parse_args(argv)
    if args.gpu:
        code = subprocess.run([sys.executable, "-m", "bench.gpu", "--out", str(Path(args.out_dir) / "gpu.json")],
                              cwd=REPO, env=child_env()).returncode
        raise SystemExit(code or table.main([]))
    if not args.table:
        names = list(args.only or ORDER)
        started = time.perf_counter()
        status = [run(name, args.full, Path(args.out_dir)) for name in names]
        total = time.perf_counter() - started
        print("\nbenchmark        exit  seconds")
        for s in status:
            print(f"{s['name']:<16} {s['returncode']:>4}  {s['seconds']:>7.0f}")
        print(f"{'total':<16}       {total:>7.0f}  ({os.cpu_count()} cores, load now {load_average()})")
        failed = [s["name"] for s in status if s["returncode"] != 0]
    else:
        failed = []
    if table.main([]) != 0:
        failed.append("table")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
