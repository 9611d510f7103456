"""A stand-in for lit_gen.fit that trains nothing: sweep tests run it as their trial program.

The program takes what a sweep agent passes (``--run-id ID`` and ``key=value`` overrides, nested
ones as dict literals), writes ``<run.output_dir>/fake/<ID>/`` with ``args.json`` (what it was
given), one ``metrics.jsonl`` line per epoch with ``val/loss = quality + 1 / (epoch + 1)``, and
``summary.json``. ``fail=1`` makes it print an error and exit 1; ``sleep`` waits before each epoch.
"""

from __future__ import annotations

from pathlib import Path

PROGRAM = r'''
import ast, json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
run_id = args[args.index("--run-id") + 1]
del args[args.index("--run-id"):args.index("--run-id") + 2]
cfg = {}
for arg in args:
    key, value = arg.lstrip("-").split("=", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    cfg[key] = value
run_dir = Path(cfg["run.output_dir"]) / "fake" / run_id
run_dir.mkdir(parents=True)
(run_dir / "args.json").write_text(json.dumps({"argv": sys.argv[1:], "config": cfg, "pid": os.getpid()}))
print("run dir", run_dir, flush=True)
if cfg.get("fail"):
    print("Traceback (most recent call last):\nValueError: the fake trial was told to fail", flush=True)
    sys.exit(1)
quality = float(cfg.get("quality", 0.0))
loss = None
for epoch in range(int(cfg.get("epochs", 3))):
    time.sleep(float(cfg.get("sleep", 0.0)))
    loss = quality + 1.0 / (epoch + 1)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": epoch, "step": epoch * 10, "val/loss": loss}) + "\n")
(run_dir / "summary.json").write_text(json.dumps({"metrics": {"val/loss": loss}}))
'''


def write_fake_program(folder: Path) -> Path:
    """Write the fake trial program into ``folder`` and return its path."""
    path = Path(folder) / "fake_trial.py"
    path.write_text(PROGRAM)
    return path


def write_sweep(folder: Path, parameters: str, *, method: str = "grid", extra: str = "",
                args_macro: str = "${args_no_hyphens}") -> Path:
    """A sweep file that runs the fake program; ``parameters`` is the YAML body under ``parameters:``."""
    program = write_fake_program(folder)
    path = Path(folder) / "sweep.yaml"
    path.write_text(
        f"name: fake\nprogram: {program}\nmethod: {method}\nmetric:\n  name: val/loss\n  goal: minimize\n"
        f"{extra}parameters:\n{parameters}"
        f"command:\n  - ${{env}}\n  - ${{interpreter}}\n  - ${{program}}\n  - {args_macro}\n"
    )
    return path
