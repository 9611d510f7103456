"""What lit_gen's training path costs per step compared with a hand-written PyTorch loop.

    python -m bench.overhead                 # digits DDPM and digits VAE, 10 interleaved repetitions
    python -m bench.overhead --quick         # fewer steps per repetition, still 10 repetitions

For each config the same model class, data, optimizer, seed and number of steps run in up to four
arms, interleaved in one process (A B C C B A ...):

- ``lit_gen``: ``lit_gen.fit.main`` itself (the CLI's code: its callbacks, CSV logger, checkpoints,
  validation and sample grids exactly as it builds them), with a timing callback added to the
  Trainer it creates; the W&B logger on (offline), as it is by default; ``report.md`` off (it acts
  after training).
- ``lightning``: a bare ``lightning.Trainer`` (no logger, checkpoints, validation or progress bar)
  on the same model and datamodule: Lightning's own loop cost.
- ``lightning_no_log``: the same without the model's per-step ``self.log`` calls.
- ``plain``: a ``for`` loop over the same datamodule's train loader: ``model.loss(batch)``,
  ``backward``, the config's gradient clipping, the model's own AdamW (and LR schedule),
  ``optimizer.step()``, and the DDPM's EMA update.

A step's time is the time between the starts of two consecutive steps in one epoch (batch fetch,
forward, backward, optimizer, callbacks, logging); the first warm-up steps are left out. With one
torch thread on a CPU it is the training thread's CPU time (other jobs' preemption would dominate
wall time on a shared machine; wall-time ratios are recorded too). The targets (``TARGETS``) compare
mean step times (periodic costs such as the CSV log every 50 steps count) of lit_gen and a baseline
within each repetition (a pair): the plain loop for the DDPM (<= 1.03x), bare Lightning for the small
VAE step (<= 1.05x: what lit_gen adds to Lightning's own loop), and take the median of the pairs' ratios with a 95% percentile-bootstrap
interval (``bench.stats.paired_median_ratio``, at least 10 pairs): "met" only if the whole interval
is within the bound, "missed" if it is entirely outside, otherwise "inconclusive". Separately: what each epoch end costs lit_gen (validation,
checkpoints, grids) and micro-timings of the per-step hooks lit_gen adds (the step reseed, the
non-finite gradient check, whose norm gradient clipping reuses).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from bench.common import REPO, Recorder, base_parser, interleave, median, setup, sync
from bench.stats import MIN_PAIRS, Interval, paired_median_ratio

CONFIGS = {"ddpm_digits": "configs/ddpm_digits.yaml", "vae_digits": "configs/vae_digits.yaml"}
#: Per config: (baseline arm, bound on lit_gen's step time over the baseline's). A small step (the VAE) shows what
#: lit_gen adds on top of Lightning; a DDPM step, what it adds to a plain loop.
TARGETS = {"ddpm_digits": ("plain", 1.03), "vae_digits": ("lightning", 1.05)}


class StepClock:
    """Timestamps of step starts, epoch ends and validation, as a Lightning callback or by hand."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, int]] = []  # (wall time, epoch)
        self.cpu: list[float] = []  # CPU time of this thread at each step start
        self.validation: list[float] = []
        self.end: float | None = None
        self._val_start = None

    def step(self, epoch: int) -> None:
        self.starts.append((time.perf_counter(), epoch))
        self.cpu.append(time.thread_time())

    def durations(self, warmup: int, cpu: bool = False) -> tuple[list[float], list[float]]:
        """(within-epoch step durations, epoch-boundary durations), both after ``warmup`` steps."""
        inner, boundary = [], []
        for i in range(max(warmup, 1), len(self.starts)):
            (t0, e0), (t1, e1) = self.starts[i - 1], self.starts[i]
            duration = self.cpu[i] - self.cpu[i - 1] if cpu else t1 - t0
            (inner if e0 == e1 else boundary).append(duration)
        return inner, boundary

    def window(self, warmup: int) -> float:
        """Seconds from the start of step ``warmup`` to the end of training (everything included)."""
        return (self.end or time.perf_counter()) - self.starts[warmup][0]

    def callback(self):
        import lightning as L

        clock = self

        class _Callback(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                clock.step(trainer.current_epoch)

            def on_validation_start(self, trainer, pl_module):
                if not trainer.sanity_checking:
                    clock._val_start = time.perf_counter()

            def on_validation_end(self, trainer, pl_module):
                if not trainer.sanity_checking and clock._val_start is not None:
                    clock.validation.append(time.perf_counter() - clock._val_start)

            def on_train_end(self, trainer, pl_module):
                clock.end = time.perf_counter()

        return _Callback()


def summarize(clock: StepClock, warmup: int, steps: int) -> dict:
    inner, boundary = clock.durations(warmup)
    cpu, _ = clock.durations(warmup, cpu=True)
    return {
        "mean_step_s": sum(inner) / len(inner),
        "median_step_s": median(inner),
        "cpu_mean_step_s": sum(cpu) / len(cpu),
        "cpu_median_step_s": median(cpu),
        "steps_timed": len(inner),
        "epoch_boundaries": len(boundary),
        "boundary_extra_s": median([b - median(inner) for b in boundary]) if boundary else 0.0,
        "validation_s": median(clock.validation) if clock.validation else 0.0,
        "window_s_per_step": clock.window(warmup) / (steps - warmup),
    }


# ----------------------------------------------------------------------------------- the arms
def run_lit_gen(config: str, steps: int, workdir: Path, tag: str, extra: list[str] = ()) -> StepClock:
    """``lit_gen.fit.main`` in this process, with a timing callback slipped into its Trainer."""
    import lightning

    from lit_gen import fit

    clock = StepClock()
    original = lightning.Trainer

    class TimedTrainer(original):
        # Same signature as Trainer.__init__ (lit_gen.config validates trainer keys against it).
        @functools.wraps(original.__init__)
        def __init__(self, *args, callbacks=None, **kwargs):
            super().__init__(*args, callbacks=[*(callbacks or []), clock.callback()], **kwargs)

    argv = ["--config", str(REPO / config), "--run-id", tag, "--resume", "never",
            f"trainer.max_steps={steps}", "trainer.max_epochs=-1",
            f"run.output_dir={workdir}", "eval.report=false", *extra]
    with mock.patch.object(lightning, "Trainer", TimedTrainer), contextlib.redirect_stdout(io.StringIO()):
        code = fit.main(argv)
    os.environ.pop("LIT_GEN_RUN_ID", None)  # fit.main leaves it for DDP workers; the next run is a new one
    if code != 0:
        raise SystemExit(f"lit_gen.fit failed for {config} (exit {code})")
    return clock


def _build(config: str, seed_overrides: list[str] | None = None):
    import lightning as L

    from lit_gen.config import load_config
    from lit_gen.fit import build

    cfg = load_config(REPO / config, seed_overrides or [])
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return cfg, datamodule, model


def run_lightning(config: str, steps: int) -> StepClock:
    import lightning as L

    cfg, datamodule, model = _build(config)
    clock = StepClock()
    trainer = L.Trainer(accelerator=cfg.trainer.get("accelerator", "auto"), devices=1, max_steps=steps, max_epochs=-1,
                        gradient_clip_val=cfg.trainer.get("gradient_clip_val"), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[clock.callback()])
    trainer.fit(model, datamodule=datamodule)
    return clock


def run_plain(config: str, steps: int) -> StepClock:
    cfg, datamodule, model = _build(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    optimizers = model.configure_optimizers(total_steps=steps)  # a loop of its own gives the cosine its length
    if isinstance(optimizers, dict):
        optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    else:
        optimizer, scheduler = optimizers, None
    clip = cfg.trainer.get("gradient_clip_val")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    update_ema = getattr(model, "update_ema", None)
    clock = StepClock()
    done, epoch = 0, 0
    while done < steps:
        for images, labels in datamodule.train_dataloader():
            clock.step(epoch)
            batch = (images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
            loss = model.loss(batch).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if update_ema is not None:
                update_ema()
            done += 1
            if done >= steps:
                break
        epoch += 1
    sync(device)
    clock.end = time.perf_counter()
    return clock


# ----------------------------------------------------------------------------------- per-step hooks
def hook_costs(config: str, repeats: int = 200) -> dict:
    """Micro-timings (microseconds per call, median) of what lit_gen adds to every step."""
    from lit_gen.models.base import gradient_norm
    from lit_gen.callbacks.step_seed import seed_torch, step_seed

    from lit_gen.models.parameters import count_parameters

    _, datamodule, model = _build(config)
    batch = next(iter(datamodule.train_dataloader()))
    model.train()
    model.loss(batch).total.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params if p.grad is not None]

    def timed(fn) -> float:
        fn()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return round(median(samples) * 1e6, 1)

    state = torch.random.get_rng_state()
    seed_us = timed(lambda: torch.manual_seed(step_seed(0, 123, 0)))
    seed_torch_us = timed(lambda: seed_torch(step_seed(0, 123, 0)))
    torch.random.set_rng_state(state)
    return {
        "note": "called from a shallow stack; inside Lightning's deep stack torch.manual_seed costs far more on a machine "
                "where CUDA is not initialised (it formats the whole stack for its lazy CUDA queue)",
        "gradient_tensors": len(grads),
        # The trained network only; the EMA copy and frozen parts are listed apart.
        **{f"parameters_{k}": v for k, v in count_parameters(model).as_dict().items()},
        "step_seed_torch_manual_seed_us": seed_us,
        "step_seed_lit_gen_seed_torch_us": seed_torch_us,
        "nonfinite_guard_gradient_norm_us": timed(lambda: bool(torch.isfinite(gradient_norm(params)))),
        "isfinite_per_tensor_us": timed(lambda: bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())),
    }


# ----------------------------------------------------------------------------------- main
@contextlib.contextmanager
def no_step_logging():
    from lit_gen.models.base import GenerativeModule

    with mock.patch.object(GenerativeModule, "log_values", lambda self, *args, **kwargs: None):
        yield


def step_basis() -> str:
    """CPU time of the training thread on a CPU with one torch thread (immune to other jobs' preemption), else wall time."""
    if not torch.cuda.is_available() and torch.get_num_threads() == 1:
        return "cpu_mean_step_s"
    return "mean_step_s"


def measure(name: str, config: str, steps: int, warmup: int, repeats: int, workdir: Path, arms: list[str],
            extra: list[str]) -> dict:
    counter = {"n": 0}

    def lit_gen_arm(context=contextlib.nullcontext):
        counter["n"] += 1
        with context():
            clock = run_lit_gen(config, steps, workdir, f"{name}-{counter['n']}", extra)
        return summarize(clock, warmup, steps)

    def lightning_arm(context=contextlib.nullcontext):
        with context():
            return summarize(run_lightning(config, steps), warmup, steps)

    available = {
        "lit_gen": lit_gen_arm,
        "lightning": lightning_arm,
        "lightning_no_log": lambda: lightning_arm(no_step_logging),
        "plain": lambda: summarize(run_plain(config, steps), warmup, steps),
    }
    results = interleave({arm: available[arm] for arm in arms}, repeats)

    def ratio(arm: str, key: str) -> float | None:
        if arm not in results:
            return None
        return median([a[key] / p[key] for a, p in zip(results[arm], results["plain"])])

    def ms(key: str) -> dict:
        return {arm: round(median([r[key] for r in runs]) * 1e3, 3) for arm, runs in results.items()}

    basis = step_basis()
    return {
        "config": config,
        "steps": steps,
        "warmup_steps": warmup,
        "repeats": repeats,
        "overrides": extra,
        "basis": basis,
        "ratio": ratio("lit_gen", basis),
        "interval": paired_median_ratio([r[basis] for r in results["lit_gen"]], [r[basis] for r in results["plain"]]).as_dict(),
        "ratio_per_repeat": [round(a[basis] / p[basis], 4) for a, p in zip(results["lit_gen"], results["plain"])],
        # What lit_gen adds on top of Lightning's own loop (same pairs, the bare Trainer as the baseline).
        "interval_vs_lightning": paired_median_ratio([r[basis] for r in results["lit_gen"]],
                                                     [r[basis] for r in results["lightning"]]).as_dict(),
        "ratios_vs_plain": {arm: {key: ratio(arm, key) for key in ("cpu_mean_step_s", "mean_step_s", "median_step_s")}
                            for arm in results if arm != "plain"},
        "ratio_wall_including_epoch_ends": ratio("lit_gen", "window_s_per_step"),
        "step_ms": ms(basis),
        "step_ms_wall_median": ms("median_step_s"),
        "lit_gen_epoch_end_ms": round(median([r["boundary_extra_s"] for r in results["lit_gen"]]) * 1e3, 1),
        "lit_gen_validation_ms": round(median([r["validation_s"] for r in results["lit_gen"]]) * 1e3, 1),
        "runs": {arm: [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in runs]
                 for arm, runs in results.items()},
        "hooks_outside_lightning": hook_costs(config),
    }


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"interleaved repetitions (default {MIN_PAIRS}, the fewest the interval rule accepts)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on a shared machine)")
    args = parser.parse_args(argv)
    setup()
    # lit_gen.fit logs to W&B by default; offline, it writes the same files without a server.
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    if args.threads:
        torch.set_num_threads(args.threads)
    all_arms = ["lit_gen", "lightning", "lightning_no_log", "plain"]
    # (steps, warm-up steps, arms, extra overrides); digits epochs have 21 batches of 64.
    plan = {
        # DDPM steps are slow on a CPU: two epochs, and no final sample grid (written after the timed window;
        # the config's grids come every 35 epochs, so none falls inside it).
        "ddpm_digits": (21 if args.quick else 42, 5, ["lit_gen", "lightning", "plain"],
                        ["run.num_samples=0"], MIN_PAIRS),
        "vae_digits": (105 if args.quick else 420, 10, all_arms, [], MIN_PAIRS),
    }
    rec = Recorder("overhead", "lit_gen's training step vs a hand-written PyTorch loop (same model, data, optimizer)")
    rec.notes.append(f"torch threads: {torch.get_num_threads()}; arms interleaved in one process; ratios are medians over "
                     f"the repetitions of (mean step of the arm) / (mean step of the plain loop), steps within an epoch, "
                     f"with a 95% bootstrap interval of that median (bench.stats). W&B on in the lit_gen arm (offline). "
                     "With one thread on a CPU the step time is the training thread's CPU time (time.thread_time): on a "
                     "shared machine wall time mostly measures other jobs' preemption; wall-time ratios are recorded too.")
    rec.notes.append("arms: lit_gen = lit_gen.fit.main as the CLI runs it; lightning = bare Trainer (no logger, checkpoints, "
                     "validation); lightning_no_log = bare Trainer without the model's logging (log_values); plain = for loop.")
    with tempfile.TemporaryDirectory(prefix="lit_gen_bench_") as tmp:
        for name in args.configs:
            steps, warmup, arms, extra, repeats = plan[name]
            repeats = args.repeats or repeats
            result = measure(name, CONFIGS[name], steps, warmup, repeats, Path(tmp), arms, extra)
            rec.numbers[name] = result
            ratio, ms, vs = result["ratio"], result["step_ms"], result["ratios_vs_plain"]
            what = "CPU time" if result["basis"].startswith("cpu") else "wall time"
            rec.headline[f"{name} step {what} lit_gen/plain"] = (
                f"{ratio:.3f}x ({ms['lit_gen']:.2f} vs {ms['plain']:.2f} ms; bare Lightning "
                f"{vs['lightning'][result['basis']]:.3f}x"
                + f"; median wall-time ratio {vs['lit_gen']['median_step_s']:.3f}x)")
            rec.headline[f"{name} wall time incl. validation+checkpoints"] = f"{result['ratio_wall_including_epoch_ends']:.3f}x"
            baseline, bound = TARGETS[name]
            interval = result["interval"] if baseline == "plain" else result["interval_vs_lightning"]
            rec.target(f"{name} step-time ratio lit_gen/{baseline}", interval["estimate"], "<=", bound, "x",
                       explain(result), interval=Interval(**{**interval, "n": tuple(interval["n"])}))
    path = rec.write(args.out)
    rec.report(path)


def explain(result: dict) -> str:
    """The cause of a miss, from the decomposition the run measured."""
    ms = result["step_ms"]
    extra = ms["lit_gen"] - ms["plain"]
    parts = [f"lit_gen adds {extra:.2f} ms to a plain step of {ms['plain']:.2f} ms ({extra / ms['plain']:.1%})"]
    if "lightning_no_log" in ms:
        parts.append(f"Lightning's own loop adds {ms['lightning_no_log'] - ms['plain']:.2f} ms")
        parts.append(f"the model's logging (log_values: epoch sums every step, self.log on logging steps) costs "
                     f"{ms['lightning'] - ms['lightning_no_log']:.2f} ms (bare Lightning with/without them: "
                     f"{ms['lightning']:.2f}/{ms['lightning_no_log']:.2f} ms)")
    else:
        parts.append(f"bare Lightning adds {ms['lightning'] - ms['plain']:.2f} ms")
    parts.append(f"lit_gen's callbacks and CSV logger add {ms['lit_gen'] - ms['lightning']:.2f} ms")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
