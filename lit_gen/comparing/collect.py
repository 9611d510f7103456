"""What a finished run left behind, read into one ``RunInfo`` per run folder.

Everything comes from files (``summary.json``, ``config.yaml``, ``metrics.csv``, ``fid.jsonl``,
``evaluations/*.json``, ``likelihood/*.json``, ``measures/*.json``, ``samples/``); only the parameter
count falls back to the checkpoint's model when ``summary.json`` lacks the trained / EMA / frozen
split. A value a run does not have stays ``None``; the report shows a blank with its reason.
"""

from __future__ import annotations

import glob
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lit_gen.errors import ConfigError, LitGenError

log = logging.getLogger(__name__)

@dataclass
class RunInfo:
    """One run as the comparison sees it (paths absolute)."""

    path: Path
    name: str
    run_id: str
    family: str
    data: str
    config: dict
    summary: dict
    parameters: dict | None
    steps: int | None
    images_seen: int | None
    seconds: float | None
    curves: dict[str, list[tuple[int, float]]]
    fid_records: list[dict] = field(default_factory=list)
    likelihood: dict | None = None
    measures: dict = field(default_factory=dict)
    sample_grid: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.name}/{self.run_id}"

    @property
    def checkpoint(self) -> Path | None:
        last = self.path / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None


def find_runs(paths: list[str] = (), pattern: str | None = None) -> list[Path]:
    """Run folders from explicit paths and/or a glob; a path that is not a run folder is an error."""
    folders = [Path(p) for p in paths]
    if pattern:
        matched = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "config.yaml").is_file())
        if not matched:
            raise ConfigError(f"--glob {pattern!r} matches no run folder (a folder with config.yaml), "
                              f"e.g. 'runs/*/*'")
        folders += matched
    for folder in folders:
        if not (folder / "config.yaml").is_file():
            raise ConfigError(f"{folder} is not a run folder (no config.yaml); pass runs/<name>/<id> folders")
    unique = list(dict.fromkeys(f.resolve() for f in folders))
    return unique


def read_run(folder: str | Path) -> RunInfo:
    """Read one run folder (see the module docstring for the files)."""
    from lit_gen.comparing.run_report import fid_records, last_sample_grid, read_metrics_csv

    folder = Path(folder).resolve()
    config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    steps = summary.get("global_step")
    return RunInfo(
        path=folder,
        name=str(config.get("name") or folder.parent.name),
        run_id=folder.name,
        family=str((config.get("model") or {}).get("name", "?")),
        data=str((config.get("data") or {}).get("name", "?")),
        config=config,
        summary=summary,
        parameters=_parameters(folder, summary),
        steps=steps,
        images_seen=images_seen(config, steps),
        seconds=summary.get("seconds"),
        curves=read_metrics_csv(folder / "metrics.csv") if (folder / "metrics.csv").is_file() else {},
        fid_records=[r for r in fid_records(folder) if "metric" in r and "value" in r],
        likelihood=_latest_json(folder / "likelihood", "bpd_*.json"),
        measures={p.stem: json.loads(p.read_text()) for p in sorted((folder / "measures").glob("*.json"))}
        if (folder / "measures").is_dir() else {},
        sample_grid=last_sample_grid(folder, summary),
    )


def images_seen(config: dict, steps: int | None) -> int | None:
    """Training images seen: optimizer steps x batch size x devices x gradient accumulation."""
    if steps is None:
        return None
    batch = (config.get("data") or {}).get("batch_size")
    if not isinstance(batch, int):
        return None
    trainer = config.get("trainer") or {}
    devices = trainer.get("devices", 1)
    devices = devices if isinstance(devices, int) and devices > 0 else 1
    nodes = trainer.get("num_nodes", 1) if isinstance(trainer.get("num_nodes", 1), int) else 1
    accumulate = trainer.get("accumulate_grad_batches", 1) or 1
    return int(steps) * batch * devices * nodes * int(accumulate)


def _parameters(folder: Path, summary: dict) -> dict | None:
    """{"trained", "ema", "frozen"} from summary.json (``parameter_counts``, or ``parameters`` when it holds
    the split), else counted on the checkpoint's model."""
    counts = summary.get("parameter_counts", summary.get("parameters"))
    if isinstance(counts, dict) and "trained" in counts:
        return {k: int(counts.get(k, 0)) for k in ("trained", "ema", "frozen")}
    checkpoint = folder / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        return None
    from lit_gen.checkpoints import load_model
    from lit_gen.models.parameters import count_parameters

    try:
        return count_parameters(load_model(checkpoint, map_location="cpu")).as_dict()
    except LitGenError as exc:
        log.warning("cannot count the parameters of %s: %s", checkpoint, exc)
        return None


def _latest_json(folder: Path, pattern: str) -> dict | None:
    files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    for path in reversed(files):
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("skipping unreadable record %s", path)
    return None
