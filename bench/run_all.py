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
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import CACHE, REPO, RESULTS, child_env, load_average

README = REPO / "bench" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = ("overhead", "dataloading", "precision", "memory", "diffusers_peer", "sampling")
TABLE_ORDER = (*ORDER, "vq_codebook", "fid_speed", "fid_speed_1thread", "scaling_cpu")
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


# ----------------------------------------------------------------------------------- the README table
def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_rows(record: dict, file_name: str) -> list[str]:
    """Rows of one result file: its headline numbers, then its targets (one row each)."""
    name = Path(file_name).stem  # e.g. sampling and sampling_200ep: one benchmark, two settings
    machine = record.get("machine", {})
    load = machine.get("load_average_start") or machine.get("load_average_at_start") or machine.get("load_average_before")
    load_text = f"{load[0]:.1f}" if isinstance(load, list) and load else "?"
    where = f"{record.get('date', '?')[:10]}, {machine.get('cpu', '?')} x{machine.get('cores', '?')}, load {load_text}"
    command = record.get("command", "?")
    rows = []
    headline = record.get("headline") or _fallback_headline(record)
    numbers = "<br>".join(f"{_cell(k)}: {_cell(v)}" for k, v in headline.items())
    targets = record.get("targets") or []
    target_text = "<br>".join(f"{_cell(t['name'])} {_cell(t['target'])}" for t in targets) or "-"
    met_text = "<br>".join(_met(t) for t in targets) or "-"
    rows.append(f"| [{name}](results/{file_name}) | `{_cell(command)}` | {where} | {numbers} | {target_text} | {met_text} |")
    return rows


def _met(target: dict) -> str:
    value = target.get("value")
    shown = f"{value:.3g}" if isinstance(value, (int, float)) else "-"
    if target.get("met") is True:
        return f"yes ({shown})"
    if target.get("met") is False:
        return f"**no** ({shown}): {_cell(target.get('cause', ''))}"
    return f"not measured: {_cell(target.get('cause', ''))}"


def _fallback_headline(record: dict) -> dict:
    """A few numbers of result files written by scripts without a headline (fid_speed, scaling)."""
    out = {}
    if "seconds" in record and isinstance(record["seconds"], dict):
        out.update({f"seconds {k}": v for k, v in record["seconds"].items()})
    for row in record.get("results", [])[:6] if isinstance(record.get("results"), list) else []:
        out[f"{Path(row.get('config', '?')).stem} x{row.get('processes', '?')}"] = (
            f"{row.get('images_per_s', '?')} img/s, efficiency {row.get('efficiency', '?')}")
    return out or {"see": "the JSON file"}


def render_table() -> str:
    lines = ["| benchmark | command | measured on | numbers | target | met? |", "|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(TABLE_ORDER)}
    files = sorted(RESULTS.glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem))
    for path in files:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            lines.append(f"| {path.stem} | unreadable: {exc} | | | | |")
            continue
        lines.extend(table_rows(record, path.name))
    return "\n".join(lines)


def update_readme() -> None:
    text = README.read_text() if README.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n## Results\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{render_table()}\n{END}{tail}")
    print(f"updated the results table in {README}")


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
    update_readme()
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
