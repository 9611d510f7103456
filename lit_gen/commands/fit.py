"""Train a model from a config.

    python -m lit_gen.fit --config configs/vae_mnist.yaml trainer.max_epochs=5 model.beta=0.5
    python -m lit_gen.fit --config configs/vae_mnist.yaml --model.beta=0.5        # W&B ${args}
    python -m lit_gen.fit --config configs/vae_mnist.yaml --model.beta 0.5        # W&B ${args_no_equals}
    python -m lit_gen.fit --config configs/vae_mnist.yaml "model={'beta': 0.5}"   # nested sweep parameter

Options:
    --config FILE       the YAML config (required)
    --run-id ID         name of the run folder runs/<name>/<ID>/ (default: new, or the SLURM job id)
    --resume MODE       auto (continue runs/<name>/<ID> if it has a checkpoint; the default on SLURM),
                        never (default elsewhere), or a checkpoint path
    --print-config      validate, print the resolved config and exit

This module is the only reader of SLURM and W&B environment variables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator

from lit_gen import registry
from lit_gen.cli import run_main, setup_logging, tame_lightning_logging
from lit_gen.config import RunConfig, load_config
from lit_gen.errors import ConfigError
from lit_gen.comparing.run_report import describe_parameters

log = logging.getLogger("lit_gen.fit")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m lit_gen.fit", description="Train a lit_gen model from a config.",
                                     epilog="Overrides: a.b=v, --a.b=v or --a.b v (e.g. trainer.max_epochs=5).")
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--run-id", default=None, help="run folder name under runs/<name>/")
    parser.add_argument("--resume", default=None, help="auto | never | path to a checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser.parse_known_args(argv)


def environment_run_id(environ: dict[str, str]) -> str | None:
    """The run id a cluster or a W&B agent implies: the same for every rank and every requeue."""
    if environ.get("SLURM_JOB_ID") and environ.get("SLURM_JOB_NAME") not in (None, "bash", "interactive"):
        if environ.get("SLURM_ARRAY_JOB_ID"):
            return f"slurm-{environ['SLURM_ARRAY_JOB_ID']}_{environ.get('SLURM_ARRAY_TASK_ID', '0')}"
        return f"slurm-{environ['SLURM_JOB_ID']}"
    if environ.get("WANDB_SWEEP_ID") and environ.get("WANDB_RUN_ID"):
        return f"wandb-{environ['WANDB_RUN_ID']}"
    return None


@contextlib.contextmanager
def worker_command(argv: list[str], run_id: str, resume_from) -> Iterator[None]:
    """While training, the command line that the DDP workers Lightning launches will run.

    Lightning starts each extra local rank by running this process's command again
    (``sys.executable -m lit_gen.fit`` + ``sys.argv[1:]``), so that command is the only way to hand
    the workers data. They get the arguments this ``main`` was called with plus ``--run-id`` (the
    folder rank 0 just chose) and ``--resume`` (rank 0's decision: the same checkpoint, or ``auto``
    in a folder that has none yet); argparse takes the last of a repeated option, so these win.
    ``sys.argv`` is put back afterwards, so nothing of this run reaches a later fit in the process.
    """
    saved = sys.argv
    resume = str(resume_from) if resume_from is not None else "auto"
    sys.argv = [saved[0] if saved else "lit_gen.fit", *argv, "--run-id", run_id, "--resume", resume]
    try:
        yield
    finally:
        sys.argv = saved


def global_rank(environ: dict[str, str]) -> int:
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if environ.get(key):
            return int(environ[key])
    return 0


def build(cfg: RunConfig):
    """Instantiate the datamodule and the model; constructor ValueErrors become ConfigErrors."""
    # Imported here: it brings torch and Lightning, which --print-config and --help never need.
    from lit_gen.build import build_model

    data_cls = registry.resolve("data", cfg.data["name"])
    try:
        datamodule = data_cls(**cfg.data_kwargs())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"data ({cfg.data['name']}): {exc}") from None
    try:
        model = build_model(cfg.model["name"], cfg.model_kwargs())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model ({cfg.model['name']}): {exc}") from None
    return datamodule, model


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    setup_logging()
    environ = dict(os.environ)
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0

    import lightning as L

    tame_lightning_logging()

    from lit_gen import runs
    from lit_gen.callbacks.ema_snapshots import EMASnapshots
    from lit_gen.callbacks.idle_hooks import skip_idle_batch_hooks
    from lit_gen.callbacks.last_checkpoint import LastCheckpoint
    from lit_gen.callbacks.metrics_file import MetricsFile, scalar_metrics
    from lit_gen.callbacks.nonfinite import NonFiniteGuard
    from lit_gen.callbacks.sample_grid import SampleGrid
    from lit_gen.callbacks.slurm_requeue import SlurmRequeue, cluster_plugins
    from lit_gen.callbacks.step_seed import StepSeed
    from lit_gen.loggers import build_loggers

    run_id = args.run_id or environment_run_id(environ)
    resume = args.resume or ("auto" if run_id else "never")
    run, resume_from = runs.open_run(cfg.run.output_dir, cfg.name, run_id, resume)
    run_id = run.path.name
    rank = global_rank(environ)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg)
    if resume_from is not None:
        runs.check_resume_fits(resume_from, model)  # a checkpoint of another model fails here, before any file is written
    # A missing, truncated or corrupt dataset fails here, before any file is written.
    datamodule.prepare_data()
    datamodule.setup("fit")

    ModelCheckpoint = L.pytorch.callbacks.ModelCheckpoint
    best = ModelCheckpoint(dirpath=str(run.checkpoints), filename="best", monitor=cfg.run.monitor, mode="min",
                           save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)
    # Without a step or time trigger its per-batch hook only returns: Lightning need not call it.
    best.on_train_batch_end = None
    samples = SampleGrid(run.samples, cfg.run.sample_every_n_epochs, cfg.run.num_samples, seed=cfg.seed,
                         sample_options=cfg.run.sample_options, scale=cfg.run.grid_scale)
    callbacks = [
        StepSeed(cfg.seed),
        NonFiniteGuard(cfg.run.max_nonfinite_steps),
        best,
        LastCheckpoint(run.last_checkpoint, cfg.run.checkpoint_every_n_steps),
        samples,
        L.pytorch.callbacks.LearningRateMonitor(logging_interval="step"),
        EMASnapshots(run.path / "ema"),  # a power EMA's snapshots (nothing for other models)
        MetricsFile(run.metrics),
    ]
    if cfg.eval.fid_every_n_epochs > 0:
        from lit_gen.callbacks.measure_fid import FIDCallback

        # Before MetricsFile (the last entry), so each epoch's row in metrics.jsonl carries that epoch's FID.
        callbacks.insert(-1, FIDCallback(cfg.eval, seed=cfg.seed, record_path=run.path / "fid.jsonl"))
    # Under srun: on SLURM's USR1 save last.ckpt at a step boundary and requeue the job.
    requeue = SlurmRequeue.from_environment(environ, run.last_checkpoint)
    if requeue is not None:
        callbacks.append(requeue)
    loggers, wandb_id = build_loggers(cfg, run, run_id, environ)
    # A progress bar redrawn into a log file is noise: show it only on a terminal unless asked.
    trainer_kwargs = {"log_every_n_steps": cfg.logger.log_every_n_steps, "enable_progress_bar": sys.stdout.isatty(), **cfg.trainer}
    try:
        trainer = L.Trainer(**trainer_kwargs, logger=loggers, callbacks=callbacks, default_root_dir=str(run.path),
                            plugins=[runs.AtomicCheckpointIO(), *cluster_plugins(environ)])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"trainer: {exc}") from None
    for callback in trainer.callbacks:  # Lightning's own included
        skip_idle_batch_hooks(callback)
    # Everything is validated: only now does the run folder appear.
    if rank == 0:
        runs.create(run, cfg.to_yaml())
        if wandb_id:
            run.write_wandb_id(wandb_id)
    # A validation-free dataset still gets best.ckpt from the training loss.
    if trainer.limit_val_batches == 0 or not len(datamodule.dataset("val")):
        best.monitor = "train/loss_epoch"

    if resume_from is not None and trainer.is_global_zero:
        log.info("resuming from %s", resume_from)
    started = time.time()
    # Workers that Lightning launches for DDP rerun this command: they must find the same folder.
    with worker_command(argv, run_id, resume_from):
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    if not trainer.is_global_zero:
        return 0
    if trainer.interrupted:
        print(f"training interrupted; resume with: python -m lit_gen.fit --config {args.config} --run-id {run_id} --resume auto")
        return 1

    from lit_gen.models.parameters import count_parameters

    counts = count_parameters(model)
    summary = {
        "name": cfg.name,
        "run_id": run_id,
        "run_dir": str(run.path),
        "model": cfg.model["name"],
        "data": cfg.data["name"],
        # The model's size is what the optimizer trains; the EMA copy and frozen stages are listed apart.
        "parameters": counts.trained,
        "parameter_counts": counts.as_dict(),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seconds": round(time.time() - started, 1),
        "metrics": scalar_metrics(trainer),
        "last_checkpoint": str(run.last_checkpoint),
        "best_checkpoint": best.best_model_path or None,
        "samples": str(samples.last_path) if samples.last_path else None,
    }
    runs.atomic_write_text(run.summary, json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    if cfg.eval.report:
        from lit_gen.comparing.run_report import write_report

        try:
            print(f"report     {write_report(run.path)}")
        except Exception as exc:  # a finished run must not fail because its report could not be drawn
            log.warning("could not write report.md: %s", exc)
    return 0


def print_summary(summary: dict) -> None:
    metrics = summary["metrics"]
    shown = {k: v for k, v in metrics.items() if k.startswith("val/") or k.endswith("_epoch")} or metrics
    print()
    print(f"run        {summary['run_dir']}")
    print(f"model      {summary['model']} ({describe_parameters(summary)}) on {summary['data']}")
    print(f"trained    {summary['global_step']} steps, {summary['epochs']} epochs in {summary['seconds']} s")
    for key in sorted(shown):
        value = shown[key]
        print(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
    print(f"checkpoint {summary['last_checkpoint']}")
    if summary["samples"]:
        print(f"samples    {summary['samples']}")

