"""bench/README.md's results tables, generated from bench/results/*.json.

    python -m bench.table            # rewrite the tables between the markers of bench/README.md
    python -m bench.table --check    # print them; exit 1 if the README is out of date

Two tables. The first has one row per record: its command, machine and load, headline numbers,
and each target with its verdict (met / missed / inconclusive, with the 95% interval) or, for
single measurements, the point value marked as such. The second has one FID column per record:
every FID of one column must share its protocol (``lit_gen.metrics.protocol.COMPARABLE_FIELDS``:
feature network hash, reference set and N, generated N, sampler and steps, training images...),
except the fields the record says it varies on purpose (``fid_varies``, e.g. the sampler in the
sampling benchmark). A column that would mix protocols is refused with the fields that differ,
and FIDs of different records never share a column.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable
from pathlib import Path

from bench.common import REPO, RESULTS
from lit_gen.metrics.protocol import protocol_differences

README = REPO / "bench" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
#: Rows come in this order; other records follow by name.
TABLE_ORDER = ("overhead", "dataloading", "precision", "memory", "diffusers_peer", "sampling", "gpu",
               "vq_codebook", "fid_speed", "fid_speed_1thread", "scaling_cpu")


class ProtocolMismatch(ValueError):
    """FIDs of different protocols were about to share one column; the message names the differing fields."""


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ----------------------------------------------------------------------------------- records table
def record_row(record: dict, file_name: str) -> str:
    """One row: a record's command, machine, headline numbers, targets and verdicts."""
    name = Path(file_name).stem
    machine = record.get("machine", {})
    load = machine.get("load_average_start")
    load_text = f"{load[0]:.1f}" if isinstance(load, list) and load else "?"
    where = f"{record.get('date', '?')[:10]}, {machine.get('cpu', '?')} x{machine.get('cores', '?')}, load {load_text}"
    if machine.get("cuda"):
        where += f", {machine['cuda']}"
    headline = record.get("headline") or {"see": "the JSON file"}
    numbers = "<br>".join(f"{_cell(k)}: {_cell(v)}" for k, v in headline.items())
    targets = record.get("targets") or []
    target_text = "<br>".join(f"{_cell(t['name'])} {_cell(t['target'])}" for t in targets) or "-"
    verdicts = "<br>".join(verdict_text(t) for t in targets) or "-"
    return f"| [{name}](results/{file_name}) | `{_cell(record.get('command', '?'))}` | {where} | {numbers} | {target_text} | {verdicts} |"


def verdict_text(target: dict) -> str:
    """``met [0.31, 0.42]``, ``**missed** [...]``, ``inconclusive [...]``, or a point value marked as one."""
    value = target.get("value")
    shown = f"{value:.3g}" if isinstance(value, (int, float)) else "-"
    interval = target.get("interval")
    if interval:
        span = (f"{shown} [{interval['low']:.3g}, {interval['high']:.3g}], n={interval['n']}"
                if interval.get("low") is not None else f"{shown}: {_cell(interval.get('reason', 'no interval'))}")
        outcome = target.get("verdict", "inconclusive")
        return {"met": f"met ({span})", "missed": f"**missed** ({span}): {_cell(target.get('cause', ''))}"}.get(
            outcome, f"inconclusive ({span})")
    if target.get("met") is None:
        return f"not measured: {_cell(target.get('cause', ''))}"
    state = "holds" if target["met"] else "**fails**"
    cause = f": {_cell(target.get('cause', ''))}" if target["met"] is False else ""
    return f"{state} (single measurement, {shown}; no interval){cause}"


# ----------------------------------------------------------------------------------- FID columns
def fid_column(entries: list[dict], varies: Iterable[str] = (), where: str = "") -> dict:
    """The shared protocol of one column's FID entries; ProtocolMismatch naming the differing fields otherwise."""
    varies = tuple(varies)
    if not entries:
        raise ProtocolMismatch(f"{where}: no FID entries")
    first = entries[0]["protocol"]
    for entry in entries[1:]:
        differences = protocol_differences(first, entry["protocol"], ignore=varies)
        if differences:
            raise ProtocolMismatch(
                f"{where}: FIDs of different protocols cannot share a column: {entries[0]['arm']} and {entry['arm']} "
                f"differ in {'; '.join(differences)}")
    return {k: v for k, v in first.items() if k not in varies}


def describe_protocol(protocol: dict, feature: dict | None = None) -> str:
    """One line naming everything a reader needs to compare with this column."""
    sha = (protocol.get("feature_weights_sha256") or "?")[:12]
    accuracy = (feature or {}).get("feature_test_accuracy")
    acc = f", test accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
    train = protocol.get("train_images") or {}
    train_text = f"; trained on {train.get('dataset')}/{train.get('split')} ({train.get('count')})" if train else ""
    sampler = (f"; {protocol.get('sampler')} {protocol.get('steps')} steps, {protocol.get('weights')} weights"
               if "sampler" in protocol else "")
    return (f"{protocol.get('metric')} (features sha256 {sha}...{acc}); reference {protocol.get('real_dataset')}/"
            f"{protocol.get('real_split')} N={protocol.get('real_count')} at {protocol.get('real_image_size')}px; "
            f"{protocol.get('generated_count')} generated{sampler}{train_text}")


def fid_table(record: dict, file_name: str) -> str:
    """One record's FIDs: arms as rows (mean ± sd over seeds), one column under one protocol."""
    entries = record.get("fid") or []
    varies = tuple(record.get("fid_varies") or ())
    protocol = fid_column(entries, varies, where=file_name)
    arms: dict[str, list[dict]] = {}
    for entry in entries:
        key = entry["arm"] + "".join(f", {k} {entry['protocol'].get(k)}" for k in varies)
        arms.setdefault(key, []).append(entry)
    lines = [f"**[{Path(file_name).stem}](results/{file_name})**: {describe_protocol(protocol, entries[0].get('feature'))}",
             "", "| arm | FID mean ± sd | seeds |", "|---|---|---|"]
    for arm, rows in arms.items():
        values = [r["value"] for r in rows]
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        seeds = ", ".join(str(r.get("seed")) for r in rows)
        lines.append(f"| {_cell(arm)} | {statistics.fmean(values):.2f} ± {sd:.2f} | {len(values)} ({seeds}) |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- the README
def load_records(results: Path = RESULTS) -> list[tuple[str, dict]]:
    order = {name: i for i, name in enumerate(TABLE_ORDER)}
    files = sorted(results.glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem))
    return [(path.name, json.loads(path.read_text())) for path in files]


def render(records: list[tuple[str, dict]]) -> str:
    lines = ["| benchmark | command | measured on | numbers | target | verdict |", "|---|---|---|---|---|---|"]
    lines += [record_row(record, name) for name, record in records]
    fid = [fid_table(record, name) for name, record in records if record.get("fid")]
    if fid:
        lines += ["", "FID, one column per record (a column never mixes protocols):", ""]
        lines += ["\n\n".join(fid)]
    return "\n".join(lines)


def updated_readme(text: str, table: str) -> str:
    if START not in text or END not in text:
        text += f"\n## Results\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="folder of the records (default bench/results)")
    parser.add_argument("--readme", default=str(README))
    parser.add_argument("--check", action="store_true", help="print the tables; exit 1 if the README differs")
    args = parser.parse_args(argv)
    try:
        table = render(load_records(Path(args.results)))
    except ProtocolMismatch as exc:
        print(f"error: {exc}")
        return 2
    readme = Path(args.readme)
    text = readme.read_text() if readme.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    new = updated_readme(text, table)
    if args.check:
        print(table)
        return 0 if new == text else 1
    readme.write_text(new)
    print(f"updated the results table in {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
