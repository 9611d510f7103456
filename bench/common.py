"""What every benchmark shares: machine facts, interleaved timing, peak memory, targets, result files.

A result file ``bench/results/<name>.json`` holds the command, the date, the machine (CPU model,
cores, load average before and after), the versions of torch, lightning and lit_gen, the numbers,
each target with its verdict (met / missed / inconclusive over a 95% interval, ``bench.stats``; a
target without an interval is marked a single measurement), and FID values with their protocols.
The ``headline`` entries and the FID entries are what ``bench/README.md``'s tables show
(``bench.table``).

Timing habit: on a shared machine the load changes from second to second, so a ratio is measured
inside one process with the two sides interleaved (A B B A ...) and reported as a median.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import json
import logging
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.stats import Interval, Verdict, verdict

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
#: Files benchmarks reuse between runs (trained checkpoints, the digits classifier); /runs/ is git-ignored.
CACHE = REPO / "runs" / "bench"

log = logging.getLogger("bench")

# Dense peak tensor-core throughput (TFLOP/s, bf16) of common training GPUs, for model FLOPs utilisation.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "L4": 121.0,
    "V100": 125.0,  # fp16 tensor cores (no bf16)
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


# ----------------------------------------------------------------------------------- machine facts
def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cuda_device_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda_device_name(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
    }


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def versions(*extra: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("torch", "lightning", "lit_gen", "torchmetrics", *extra):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def gpu_skip_reason() -> str | None:
    """Why the GPU part of a benchmark is skipped (None when a CUDA device is present)."""
    import torch

    if torch.cuda.is_available():
        return None
    return "skipped: no CUDA device on this machine (torch.cuda.is_available() is False); rerun on a GPU for these numbers"


def peak_bf16_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a known GPU (longest matching name first), else None."""
    if not device_name:
        return None
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


# ----------------------------------------------------------------------------------- timing
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def sync(device) -> None:
    """Wait for queued CUDA work, so a timer measures the work and not its launch."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def interleave(tasks: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Run each task ``repeats`` times in the order A B ... then ... B A (alternating), collecting results.

    Alternating the order cancels a steady drift of the machine's load between the first and the
    last task of a round.
    """
    names = list(tasks)
    out: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else reversed(names)):
            out[name].append(tasks[name]())
    return out


# ----------------------------------------------------------------------------------- memory
def child_peak_rss(command: list[str], *, env: dict[str, str] | None = None, cwd: str | Path = REPO,
                   timeout: float = 1800) -> dict[str, Any]:
    """Run ``command`` and return its exit code, output tails, wall seconds and peak resident memory.

    The peak is ``ru_maxrss`` of the child (from ``wait4``), i.e. the largest resident set of the
    child or of any descendant it waited for; processes it leaves running (W&B's service) are not counted.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return {"returncode": proc.returncode, "seconds": round(seconds, 1), "peak_rss_bytes": usage.ru_maxrss * 1024,
            "stdout": stdout, "stderr": stderr}


def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else None


@contextlib.contextmanager
def peak_rss_delta() -> Iterator[dict[str, int | None]]:
    """Peak resident memory of this process inside the block, above the resident memory at its start.

    Linux only: freed heap is handed back (``malloc_trim``) and the high-water mark reset
    (``/proc/self/clear_refs``), so several measurements fit in one process. Elsewhere the values are None.
    """
    result: dict[str, int | None] = {"start_bytes": None, "peak_bytes": None, "delta_bytes": None}
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    start = current_rss_bytes()
    try:
        yield result
    finally:
        peak = _status_kib("VmHWM")
        if reset and start is not None and peak is not None:
            result.update(start_bytes=start, peak_bytes=peak * 1024, delta_bytes=max(0, peak * 1024 - start))


def gib(n: float | None) -> float | None:
    return None if n is None else round(n / 2**30, 3)


def mib(n: float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def self_peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------------- targets and files
@dataclass
class Target:
    """One claim: ``value op bound`` (e.g. step-time ratio <= 1.05); ``cause`` explains a miss."""

    name: str
    value: float | None
    op: Literal["<=", ">="]
    bound: float
    unit: str = ""
    cause: str = ""
    #: The 95% interval of ``value`` (bench.stats); with it the verdict follows the interval rule.
    interval: Interval | None = None

    @property
    def verdict(self) -> Verdict | None:
        return verdict(self.interval, self.op, self.bound) if self.interval is not None else None

    @property
    def met(self) -> bool | None:
        """True: met; False: missed; None: inconclusive or not measured."""
        if self.interval is not None:
            return {"met": True, "missed": False}.get(self.verdict.outcome)
        if self.value is None or self.value != self.value:  # not measured (skipped or NaN)
            return None
        return self.value <= self.bound if self.op == "<=" else self.value >= self.bound

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": _round(self.value), "target": f"{self.op} {self.bound:g}{self.unit}",
                               "met": self.met}
        if self.interval is not None:
            v = self.verdict
            out.update(verdict=v.outcome, interval=self.interval.as_dict(), verdict_reason=v.reason)
        else:
            # A single measurement: the record says so, and the table shows it as a point, not a verdict.
            out["verdict"] = "point estimate" if self.met is not None else "not measured"
        if self.met is None and self.interval is not None and self.value is not None:
            out["cause"] = self.cause or self.verdict.reason
        elif self.met is False:
            relative = self.value / self.bound if self.bound else float("inf")
            out["gap"] = f"{self.value:.3g}{self.unit} vs {self.op} {self.bound:g}{self.unit} ({relative:.2f}x the bound)"
            out["cause"] = self.cause or (self.verdict.reason if self.interval is not None else "not analysed")
        elif self.met is None:
            out["cause"] = self.cause or "not measured"
        return out


def _round(value):
    if isinstance(value, float):
        return round(value, 4)
    return value


def portable(value):
    """``value`` with this checkout's absolute path dropped from every string (records name repo-relative paths)."""
    prefix = str(REPO) + os.sep
    if isinstance(value, str):
        return value.replace(prefix, "")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    return value


@dataclass
class Recorder:
    """Collects one benchmark's facts and writes them to ``bench/results/<name>.json``."""

    name: str
    description: str
    argv: list[str] = field(default_factory=lambda: list(sys.argv[1:]))
    numbers: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, str] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_versions: tuple[str, ...] = ()
    #: FID values with their protocols (``add_fid``); the table puts one record's in one column.
    fid: list[dict[str, Any]] = field(default_factory=list)
    #: Protocol fields this benchmark varies on purpose (e.g. sampler, steps): shown per row.
    fid_varies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.started = time.perf_counter()
        self.date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.load_start = load_average()

    @property
    def command(self) -> str:
        """The command line that reruns this record, quoted for a shell (an override's ``;`` stays inside)."""
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        module = spec.name if spec is not None and spec.name.startswith("bench.") else f"bench.{self.name}"
        return " ".join(["python -m", module, shlex.join(self.argv)]).strip()

    def target(self, *args, **kwargs) -> Target:
        t = Target(*args, **kwargs)
        self.targets.append(t)
        return t

    def add_fid(self, arm: str, seed: int | None, record) -> None:
        """Keep one FID value (a ``FIDRecord``) with its comparable protocol, for the results table."""
        from lit_gen.metrics.protocol import protocol_of

        data = record.to_dict()
        self.fid.append({"arm": arm, "seed": seed, "value": round(float(data["value"]), 4),
                         "protocol": protocol_of(data),
                         "feature": {k: data.get(k) for k in ("feature_weights_path", "feature_test_accuracy",
                                                               "feature_build_command")}})

    def add_fid_value(self, arm: str, seed: int | None, value: float, protocol: dict[str, Any],
                      feature: dict[str, Any] | None = None) -> None:
        """Keep an FID computed outside ``evaluate_model``, with the protocol dict it was measured under."""
        from lit_gen.metrics.protocol import COMPARABLE_FIELDS

        missing = [k for k in COMPARABLE_FIELDS if k not in protocol]
        assert not missing, f"protocol lacks {missing}"
        self.fid.append({"arm": arm, "seed": seed, "value": round(float(value), 4),
                         "protocol": {k: protocol[k] for k in COMPARABLE_FIELDS}, "feature": feature or {}})

    def write(self, out: str | Path | None = None) -> Path:
        path = Path(out) if out else RESULTS / f"{self.name}.json"
        record = {
            "name": self.name,
            "description": self.description,
            "command": self.command,
            "date": self.date,
            "seconds": round(time.perf_counter() - self.started, 1),
            "machine": {**machine_info(), "load_average_start": self.load_start, "load_average_end": load_average()},
            "versions": versions(*self.extra_versions),
            "headline": self.headline,
            "targets": [t.to_dict() for t in self.targets],
            "numbers": self.numbers,
            "notes": self.notes,
        }
        if self.fid:
            record.update(fid=self.fid, fid_varies=list(self.fid_varies))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(portable(record), indent=2, default=str) + "\n")
        tmp.replace(path)
        return path

    def report(self, path: Path) -> None:
        """Print the headline and the targets (benchmarks are command-line programs)."""
        print(f"\n== {self.name}: {self.description}")
        for key, value in self.headline.items():
            print(f"  {key}: {value}")
        for t in self.targets:
            d = t.to_dict()
            state = d.get("verdict") if d.get("verdict") in ("inconclusive", "not measured") else {True: "met", False: "MISSED", None: "not measured"}[d["met"]]
            print(f"  target {d['name']}: {d['value']} ({d['target']}) {state}" + (f" - {d['cause']}" if d.get("cause") else ""))
        print(f"  load average {self.load_start} -> {load_average()}; wrote {path}")


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller settings, so `make bench` stays within 20 minutes")
    parser.add_argument("--out", default=None, help="result file (default bench/results/<name>.json)")
    return parser


def setup() -> None:
    """Logging for a benchmark run: lit_gen's and Lightning's info lines stay quiet."""
    import warnings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric", "lit_gen"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # Configs ask for more loader workers than this machine has cores; the records say so instead.
    warnings.filterwarnings("ignore", message=".*excessive worker creation.*")
    warnings.filterwarnings("ignore", message=".*This DataLoader will create.*")
    warnings.filterwarnings("ignore", message=".*set_vital.*")
    warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true but no accelerator.*")


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: the repo importable, W&B offline and quiet, plus ``extra``."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "WANDB_SILENT": "true", **extra}
    return {k: v for k, v in env.items() if not k.startswith("SLURM_")}


# ----------------------------------------------------------------------------------- workers
def answer_as_worker(spec_json: str | None, worker: Callable[[dict], dict]) -> bool:
    """In a benchmark's worker process (its hidden ``--worker-spec``): print ``RESULT <json>`` of
    ``worker(spec)`` for ``call_worker`` and return True; return False in the driver (no spec)."""
    if not spec_json:
        return False
    print("RESULT " + json.dumps(worker(json.loads(spec_json))), flush=True)
    return True


def call_worker(module: str, spec: dict, threads: int, timeout: float, what: str) -> dict:
    """Run ``python -m module --worker-spec <spec>`` in a fresh process with ``threads`` torch threads and
    W&B offline; return its RESULT, or stop naming ``what`` failed with the end of its stderr."""
    command = [sys.executable, "-m", module, "--worker-spec", json.dumps(spec)]
    result = subprocess.run(command, cwd=REPO, env=child_env(OMP_NUM_THREADS=str(threads), WANDB_MODE="offline"),
                            capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"the {what} run failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


#: A run whose load average (1 minute) exceeded its threads by more than this, before or after, is rerun.
LOAD_MARGIN = 0.5
#: Tries of a run before it is kept as loaded (the record then says so and its verdicts exclude it).
LOAD_TRIES = 3


def quiet_enough(load_before: list[float], load_after: list[float], threads: int) -> bool:
    """Whether a run had the machine to itself: its 1-minute load average within ``threads + LOAD_MARGIN``."""
    readings = [load[0] for load in (load_before, load_after) if load]
    return all(value <= threads + LOAD_MARGIN for value in readings)


def call_worker_quietly(module: str, spec: dict, threads: int, timeout: float, what: str,
                        wait: float = 20.0, tries: int = LOAD_TRIES) -> dict:
    """``call_worker``, rerun while the machine's load says something else ran beside it.

    Before each try it waits (up to a minute) for the load to fall within ``threads + LOAD_MARGIN``.
    The result carries both load readings, the tries and ``quiet`` (False after ``tries`` loaded tries).
    """
    for attempt in range(1, tries + 1):
        waited = 0.0
        while load_average() and load_average()[0] > threads + LOAD_MARGIN and waited < 60:
            time.sleep(wait)
            waited += wait
        before = load_average()
        result = call_worker(module, spec, threads, timeout, what)
        after = load_average()
        quiet = quiet_enough(before, after, threads)
        if quiet or attempt == tries:
            if not quiet:
                log.warning("%s: the load stayed above %d + %.1f for %d tries; kept, marked loaded", what, threads,
                            LOAD_MARGIN, tries)
            return {**result, "load_average_before": before, "load_average_after": after, "tries": attempt,
                    "quiet": quiet}
        log.warning("%s: load %s -> %s exceeds %d thread(s) + %.1f: running it again", what, before, after, threads,
                    LOAD_MARGIN)
    raise AssertionError("unreachable")


def cached_run(folder: Path, spec: dict, run: Callable[[], dict], resume: bool) -> dict:
    """``run()``'s result, saved as ``folder/result.json`` beside the spec that produced it; with ``resume``
    a saved result of the same spec is returned instead of running again (marked ``reused``), so a benchmark
    interrupted after hours continues where it stopped."""
    path = Path(folder) / "result.json"
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("spec") == spec:
            return {**saved["result"], "reused": True}
    result = run()
    path.write_text(json.dumps({"spec": spec, "result": result}, default=str) + "\n")
    return result


def worker_run(folder: Path, spec: dict, module: str, threads: int, timeout: float, what: str, resume: bool) -> dict:
    """``call_worker(module, spec, ...)`` run in ``folder`` emptied first (a run an interrupted invocation left
    unfinished starts afresh), with the load average before and after; cached there by ``cached_run``."""
    folder = Path(folder)

    def run() -> dict:
        for leftover in list(folder.iterdir()):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        before = load_average()
        result = call_worker(module, spec, threads, timeout, what)
        return {**result, "load_average_before": before, "load_average_after": load_average()}

    return cached_run(folder, spec, run, resume)


def parse_named_overrides(text: str, flag: str) -> tuple[str, list[str]]:
    """``NAME=KEY=VALUE[;KEY=VALUE]`` (a benchmark's ``flag``) -> (NAME, config overrides)."""
    name, sep, rest = text.partition("=")
    overrides = [o.strip() for o in rest.split(";") if o.strip()]
    if not sep or not name.isidentifier() or not overrides or any("=" not in o for o in overrides):
        raise SystemExit(f"{flag} {text!r}: expected NAME=KEY=VALUE[;KEY=VALUE], e.g. flow=model.objective=flow")
    return name, overrides


#: Images per ``sample()`` call in the FID benchmarks: with one generator the draws depend on it, so
#: records that share it (bench.diffusers_peer, bench.few_step) draw the same images for the same seed.
SAMPLE_CHUNK = 250


def sample_in_chunks(model, n: int, seed: int, chunk: int = SAMPLE_CHUNK, labels=None, **options) -> torch.Tensor:
    """``n`` samples of ``model.sample(**options)`` from one generator seeded ``seed``, ``chunk`` per call
    (``labels``, for a conditional model: (n,) classes, split the same way)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(chunk, n - s), generator=generator, **options,
                                   **({"labels": labels[s:s + chunk]} if labels is not None else {}))
                      for s in range(0, n, chunk)])
