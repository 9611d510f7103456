"""How strong the tests of the numeric core are: mutation testing with mutmut, written to a record.

    make mutation                                   # the whole run (hours on 2 cores), then the record
    python -m bench.mutation                        # the same
    python -m bench.mutation --record-only          # rewrite the record from the last run's results
    python -m bench.mutation --only 'lit_gen.diffusion.samplers*'   # rerun some mutants, then the record

mutmut (``[tool.mutmut]`` in ``pyproject.toml`` names the modules and the tests) changes one thing at a
time in the modules below (an operator, a constant, a call) and runs the tests that reach the changed
function. A mutant is *killed* when a test fails (a timeout counts: the change made the code hang), it
*survives* when every test passes, and *no tests* means no selected test reaches it (counted as a
survivor). Some survivors cannot be killed because the change does not change behaviour (an
*equivalent* mutant, e.g. ``x * 1.0`` for ``x``): ``bench/mutation_equivalents.toml`` lists each with
the changed line and the reason, and the record counts them apart. An entry whose line no longer
matches the mutant's diff is stale and the mutant counts as a survivor again.

Target: at least 90% of the non-equivalent mutants killed over all the modules. The record lists every
survivor with its diff, so the next test to write is one look away.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

from bench.common import REPO, Recorder, setup
from bench.stats import Interval

EQUIVALENTS = REPO / "bench" / "mutation_equivalents.toml"
TARGET = 0.90

#: mutmut's exit codes, grouped as this record counts them.
KILLED_CODES = {1, 3}
TIMEOUT_CODES = {36, -24, 24, 152, 255}
SURVIVED_CODES = {0}
NO_TEST_CODES = {5, 33}
NOT_RUN_CODES = {None, 2, 34}


def mutated_modules() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def mutmut_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mutmut", *args]


def run_mutmut(only: list[str], max_children: int) -> None:
    subprocess.run(mutmut_command("run", "--max-children", str(max_children), *only), cwd=REPO, check=False)


def results_by_file() -> dict[str, dict[str, int | None]]:
    """Each mutated file's ``{mutant name: exit code}`` from mutmut's ``mutants/<path>.meta`` files."""
    out: dict[str, dict[str, int | None]] = {}
    for meta in sorted((REPO / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(REPO / "mutants").as_posix()[: -len(".meta")]
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        if codes:
            out[source] = codes
    return out


def rerun_patterns(results: dict[str, dict[str, int | None]]) -> list[str]:
    """The ``--only`` patterns that rerun exactly the mutants with a result: a module's where all of its
    mutants ran, else one per function all of whose mutants ran (a function is the unit mutmut reruns)."""
    patterns = []
    for path, codes in sorted(results.items()):
        by_function: dict[str, list[bool]] = {}
        for name, code in codes.items():
            by_function.setdefault(name.rsplit("__mutmut_", 1)[0], []).append(code not in NOT_RUN_CODES)
        ran = sorted(function for function, flags in by_function.items() if all(flags))
        if len(ran) == len(by_function):
            patterns.append(path[: -len(".py")].replace("/", ".") + "*")
        else:
            patterns += [f"{function}__mutmut_*" for function in ran]
    return patterns


def status_of(code: int | None) -> str:
    if code in KILLED_CODES:
        return "killed"
    if code in TIMEOUT_CODES:
        return "timeout"
    if code in SURVIVED_CODES:
        return "survived"
    if code in NO_TEST_CODES:
        return "no tests"
    if code in NOT_RUN_CODES:
        return "not run"
    return "suspicious"


def diff_of(name: str, path: str) -> str:
    """The mutant's change as a unified diff of its function (mutmut's own rendering)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return get_diff_for_mutant(name, path=path)
    finally:
        os.chdir(cwd)


def changed_lines(diff: str) -> list[str]:
    return [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]


def load_equivalents() -> dict[str, dict[str, str]]:
    if not EQUIVALENTS.exists():
        return {}
    entries = tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])
    return {entry["mutant"]: entry for entry in entries}


def summarise(results: dict[str, dict[str, int | None]], equivalents: dict[str, dict[str, str]]) -> dict:
    modules: dict[str, Counter] = {}
    survivors, equivalent, stale, unrun = [], [], [], []
    for path, codes in results.items():
        counts = modules.setdefault(path, Counter())
        for name, code in sorted(codes.items()):
            status = status_of(code)
            if status in ("survived", "no tests", "suspicious"):
                diff = diff_of(name, path)
                entry = equivalents.get(name)
                if entry is not None and entry["line"].strip() in changed_lines(diff):
                    equivalent.append({"mutant": name, "line": entry["line"], "reason": entry["reason"]})
                    status = "equivalent"
                else:
                    if entry is not None:
                        stale.append(name)
                    survivors.append({"mutant": name, "status": status, "diff": diff})
            elif status == "not run":
                unrun.append(name)
            counts[status] += 1
    total = Counter()
    for counts in modules.values():
        total.update(counts)
    killed = total["killed"] + total["timeout"]
    judged = sum(total.values()) - total["equivalent"] - total["not run"]
    return {
        "modules": {path: dict(counts) for path, counts in modules.items()},
        "total": dict(total),
        "killed": killed,
        "judged": judged,
        "score": killed / judged if judged else None,
        "survivors": survivors,
        "equivalent": equivalent,
        "stale_equivalents": stale,
        "not_run": unrun,
    }


def whole_core_share(summary: dict) -> Interval | None:
    """The killed share over every mutant of the core, run or not: a mutant not run may go either way, so
    the share lies between all of them surviving and all of them killed (None when nothing was judged)."""
    unrun = len(summary["not_run"])
    whole = summary["judged"] + unrun
    if not summary["judged"]:
        return None
    return Interval(summary["score"], summary["killed"] / whole, (summary["killed"] + unrun) / whole,
                    "bounds: every mutant not run survives / is killed", (whole,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record-only", action="store_true", help="write the record from the last run's results")
    parser.add_argument("--only", nargs="*", default=[], help="mutant names or globs to (re)run")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    setup()
    recorder = Recorder("mutation", "mutation testing of the numeric core (mutmut): the share of mutants the tests kill",
                        extra_versions=("mutmut",))
    if not args.record_only:
        run_mutmut(args.only, args.max_children)
    results = results_by_file()
    if not results:
        raise SystemExit("no mutmut results under mutants/: run `python -m bench.mutation` (without --record-only) first")
    summary = summarise(results, load_equivalents())
    missing = [pattern for pattern in mutated_modules()
               if not any(Path(path).match(pattern) or path.startswith(pattern.rstrip("*")) for path in results)]
    recorder.numbers.update(mutated=mutated_modules(), missing_modules=missing, **summary)
    recorder.headline.update({
        "killed": f"{summary['killed']} of {summary['judged']} non-equivalent mutants "
                  f"({100 * (summary['score'] or 0):.1f}%)",
        "equivalent": str(len(summary["equivalent"])),
        "survivors": str(len(summary["survivors"])),
    })
    # Every mutant that ran is counted: the share is exact for the code as it stands, not a sample of it.
    ran = sorted(path for path, counts in summary["modules"].items() if set(counts) != {"not run"})
    exact = Interval(summary["score"], summary["score"], summary["score"],
                     "exact share over every mutant run (no sampling)", (summary["judged"],))
    recorder.target(f"killed share of non-equivalent mutants, the {len(ran)} module(s) run", summary["score"], ">=",
                    TARGET, interval=exact, cause=f"{len(summary['survivors'])} survivors: see numbers.survivors")
    core = whole_core_share(summary)
    if core is not None:
        unrun = len(summary["not_run"])
        recorder.target("killed share of non-equivalent mutants, the whole numeric core", summary["score"], ">=",
                        TARGET, interval=core, cause=f"{unrun} mutants not run" if unrun else "")
    recorder.numbers["modules_run"] = ran
    # The results on disk may come from several invocations; this one command reruns every mutant they hold.
    patterns = rerun_patterns(results)
    recorder.numbers["rerun_command"] = ("python -m bench.mutation --max-children 1 --only "
                                         + " ".join(f"'{p}'" for p in patterns))
    if summary["not_run"] or missing:
        recorder.notes.append(f"{len(summary['not_run'])} mutants not run and modules without results {missing}: "
                              "the score covers what ran")
    if summary["stale_equivalents"]:
        recorder.notes.append(f"stale equivalence entries (their line no longer matches): {summary['stale_equivalents']}")
    path = recorder.write(args.out)
    recorder.report(path)


if __name__ == "__main__":
    main()
