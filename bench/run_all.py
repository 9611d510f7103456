"""Run every benchmark in sequence (``make bench``), then rebuild bench/README.md's results table.

    python -m bench.run_all                 # quick settings: about 20 minutes on 2 CPU cores
    python -m bench.run_all --full          # each benchmark's full defaults (an hour or more on 2 cores)
    python -m bench.run_all --only overhead memory
    python -m bench.run_all --table         # only rebuild the README table from bench/results/*.json

Each benchmark runs as its own process and writes ``bench/results/<name>.json``; one that fails is
reported and the others still run. ``bench.sampling --quick`` reuses the lit_gen DDPM that
``bench.diffusers_peer`` just trained (240 s of the quickstart config); without diffusers it trains
the quickstart shortened to 20 epochs. ``bench/fid_speed.py``, ``bench/scaling.py`` and
``bench.vq_codebook`` run only with ``--extra`` (or on their own, see bench/README.md).
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

ORDER = ("overhead", "dataloading", "precision", "memory", "diffusers_peer", "sampling")
#: Benchmarks run only with --extra (longer, or written by other scripts): their command lines.
EXTRA = {
    "fid_speed": ["bench/fid_speed.py", "--num", "10000"],
    "scaling": ["bench/scaling.py"],
    "vq_codebook": ["-m", "bench.vq_codebook"],
}
RESULT_FILE = {"scaling": "scaling_cpu.json"}
PEER_CHECKPOINT = CACHE / "peer" / "lit_gen"


def command_for(name: str, full: bool, out_dir: Path = RESULTS) -> list[str]:
    out = ["--out", str(out_dir / RESULT_FILE.get(name, f"{name}.json"))]
    if name in EXTRA:
        quick = ["--quick"] if EXTRA[name][0] == "-m" and not full else []
        return [sys.executable, *EXTRA[name], *quick, *out]
    command = [sys.executable, "-m", f"bench.{name}"] + ([] if full else ["--quick"]) + out
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
    parser.add_argument("--only", nargs="+", choices=[*ORDER, *EXTRA], help="run only these")
    parser.add_argument("--extra", action="store_true", help="also run bench/fid_speed.py, bench/scaling.py and bench.vq_codebook")
    parser.add_argument("--table", action="store_true", help="only rebuild the README table")
    parser.add_argument("--out-dir", default=str(RESULTS),
                        help="where the result files go (default bench/results; the README table reads bench/results)")
    args = parser.parse_args(argv)
    if not args.table:
        names = list(args.only or ORDER) + ([] if args.only or not args.extra else list(EXTRA))
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
