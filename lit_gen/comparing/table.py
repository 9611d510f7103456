"""The comparison table: one row per run, one column per quantity, a reason for every blank.

FID (with its KID and IS) goes to one column per *measuring protocol*: the metric and its feature
network (weights hash), the real images (dataset, split, count) and the number of generated images.
Two runs share a column only when all of these agree; the column titles name the fields in which the
columns differ. How each run was sampled (sampler, steps, guidance, EMA) is a property of the run,
shown beside its value. A missing value is ``Cell(None, reason)``, never a zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lit_gen.comparing.collect import RunInfo

#: Fields that define an FID measuring protocol, with their names for people.
PROTOCOL_FIELDS = {
    "metric": "metric",
    "feature_weights_sha256": "features",
    "real_dataset": "real data",
    "real_split": "real split",
    "real_count": "real N",
    "generated_count": "generated N",
}
NOT_MEASURED = "not measured: run python -m lit_gen.compare with --measure"


@dataclass(frozen=True)
class Cell:
    """A value (``value``, with ``text`` for display) or a blank with its ``reason``."""

    value: Any = None
    text: str = ""
    reason: str | None = None

    @property
    def blank(self) -> bool:
        return self.value is None


def blank(reason: str) -> Cell:
    return Cell(None, "", reason)


def number(value: float | int | None, fmt: str, reason: str, note: str = "") -> Cell:
    if value is None:
        return blank(reason)
    text = format(value, fmt)
    return Cell(value, f"{text} ({note})" if note else text)


@dataclass
class Table:
    """Column titles, one list of cells per run, and per-column notes (the FID protocols)."""

    columns: list[str]
    rows: list[list[Cell]]
    notes: dict[str, str] = field(default_factory=dict)

    def column(self, title: str) -> list[Cell]:
        i = self.columns.index(title)
        return [row[i] for row in self.rows]


def protocol_of(record: dict) -> tuple:
    return tuple(record.get(key) for key in PROTOCOL_FIELDS)


def protocol_titles(protocols: list[tuple]) -> dict[tuple, str]:
    """A short title per protocol naming only the fields that differ between protocols."""
    keys = list(PROTOCOL_FIELDS)
    differing = [i for i, _ in enumerate(keys) if len({p[i] for p in protocols}) > 1 and keys[i] != "metric"]
    titles = {}
    for p in protocols:
        parts = []
        for i in differing:
            value = p[i]
            if keys[i] == "feature_weights_sha256":
                value = (value or "none")[:8]
            parts.append(f"{PROTOCOL_FIELDS[keys[i]]}={value}")
        titles[p] = p[0] + (f" [{', '.join(parts)}]" if parts else "")
    return titles


def describe_protocol(p: tuple) -> str:
    return ", ".join(f"{PROTOCOL_FIELDS[k]}: {v if k != 'feature_weights_sha256' else (v or 'none')[:12]}"
                     for k, v in zip(PROTOCOL_FIELDS, p))


def _sampling_note(record: dict) -> str:
    parts = []
    if record.get("sampler"):
        parts.append(f"{record['sampler']}{record.get('steps') or ''}")
    if record.get("guidance") not in (None, 1.0):
        parts.append(f"w={record['guidance']:g}")
    if record.get("weights"):
        parts.append(str(record["weights"]))
    return ", ".join(parts)


def latest_by_protocol(run: RunInfo) -> dict[tuple, dict]:
    """Each protocol's latest record of a run (fid.jsonl in training order, then evaluations/)."""
    chosen: dict[tuple, dict] = {}
    for record in run.fid_records:
        chosen[protocol_of(record)] = record  # fid.jsonl is in training order, evaluations after it
    return chosen


def build_table(runs: list[RunInfo]) -> Table:
    """The comparison table of ``runs`` (in the given order)."""
    by_run = [latest_by_protocol(run) for run in runs]
    protocols = list(dict.fromkeys(p for chosen in by_run for p in chosen))
    titles = protocol_titles(protocols)
    columns = ["run", "family", "trained parameters", "steps", "images seen", "wall time (s)", "sampling (images/s)"]
    for p in protocols:
        columns += [titles[p], titles[p].replace(p[0], p[0].replace("FID", "KID"), 1),
                    titles[p].replace(p[0], p[0].replace("FID", "IS"), 1)]
    columns += ["reconstruction MSE", "LPIPS", "bits/image", "bits/dim", "likelihood bound", "bits/code"]
    notes = {titles[p]: describe_protocol(p) for p in protocols}

    rows = []
    for run, chosen in zip(runs, by_run):
        unfinished = "no summary.json: the run did not finish"
        params = run.parameters
        extra = [f"+{params[k]:,} {k}" for k in ("ema", "frozen") if params and params.get(k)]
        row = [
            Cell(run.label, run.label),
            Cell(run.family, run.family),
            number(params["trained"] if params else None, ",", "no summary counts and no checkpoint", ", ".join(extra)),
            number(run.steps, "d", unfinished),
            number(run.images_seen, ",", unfinished if run.steps is None else "no data.batch_size in config.yaml"),
            number(run.seconds, ".1f", unfinished),
        ]
        sampling = run.measures.get("sampling")
        row.append(number(sampling["images_per_second"], ".1f", "", _sampling_note(sampling) or "no options")
                   if sampling else blank(NOT_MEASURED))
        for p in protocols:
            record = chosen.get(p)
            if record is None:
                missing = f"no {p[0]} record with this protocol (python -m lit_gen.evaluate --ckpt ...)"
                row += [blank(missing)] * 3
                continue
            note = _sampling_note(record)
            row.append(number(record["value"], ".3f", "", note))
            kid = next((v for k, v in (record.get("extra_metrics") or {}).items() if k.startswith("KID")), None)
            inception = next((v for k, v in (record.get("extra_metrics") or {}).items() if k.startswith("IS")), None)
            row.append(Cell(kid["mean"], f"{kid['mean']:.4f} ± {kid['std']:.4f}") if kid else blank("KID was not computed"))
            row.append(Cell(inception["mean"], f"{inception['mean']:.3f} ± {inception['std']:.3f}") if inception
                       else blank("IS needs a feature network with class logits"))
        row += _reconstruction_cells(run)
        row += _likelihood_cells(run)
        rows.append(row)
    return Table(columns, rows, notes)


def _reconstruction_cells(run: RunInfo) -> list[Cell]:
    record = run.measures.get("reconstruction")
    if not record:
        return [blank(NOT_MEASURED)] * 3
    if record.get("mse") is None:  # the model said why (measure_reconstruction asks it)
        return [blank(record["reason"])] * 3
    note = f"{record['split']} N={record['count']}"
    if record.get("bits_per_image") is not None:
        rate = number(record["entropy_bits_per_image"], ".1f", "",
                      f"entropy of the codes on {note}; {record['bits_per_image']:.0f} at face value "
                      f"({record['code_grid'][0]}x{record['code_grid'][1]} codes of {record['num_codes']}), "
                      f"{100 * record['codes_used']:.0f}% of the codes used")
    else:
        rate = blank("only a model that codes images as discrete codes has a rate in bits per image")
    return [number(record.get("mse"), ".5f", record.get("reason") or "", note),
            number(record.get("lpips"), ".4f", record.get("lpips_reason") or record.get("reason") or ""), rate]


def _likelihood_cells(run: RunInfo) -> list[Cell]:
    record = run.likelihood
    if record is None:
        return [blank(NOT_MEASURED + " or python -m lit_gen.evaluate --bpd")] * 3
    protocol = f"{record['split']} N={record['count']}" if record.get("count") else ""
    bpd = number(record.get("bits_per_dim"), ".4f", record.get("reason") or "", protocol)
    bound = Cell(record["bound"], record["bound"]) if record.get("bound") else blank(record.get("reason") or "")
    per_code = (record.get("extra") or {}).get("bits_per_code")
    code_reason = "only a prior over VQ codes has bits per code"
    return [bpd, bound, number(per_code, ".4f", code_reason, protocol)]
