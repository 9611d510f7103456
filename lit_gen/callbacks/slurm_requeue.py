"""Save and requeue a SLURM job when SLURM warns that its time is nearly up (SIGUSR1).

A job that asks for it (``#SBATCH --signal=USR1@90``, as ``slurm/fit.sbatch`` does) gets SIGUSR1
in its srun tasks 90 s before the time limit. Lightning's own SLURM handler saves a checkpoint
inside the signal handler, wherever the signal lands (mid-forward, between two parameter
updates of the optimizer), and under DDP it calls a barrier from there too; the resumed run then
repeats or skips a batch, or the ranks hang. So ``lit_gen.fit`` turns Lightning's handler off
(``SLURMEnvironment(auto_requeue=False)``) and adds this callback, which only notes the signal.
At the end of the next optimizer step every rank agrees to stop, ``last.ckpt`` is written (the
same state a step checkpoint holds), rank 0 closes the loggers and runs ``scontrol requeue``, and
the processes exit. The requeued job keeps its job id, so ``lit_gen.fit`` opens the same run folder,
resumes from ``last.ckpt`` and logs to the same W&B run.

SIGTERM (``scancel``, a preemption, the time limit itself) is handled the same way without the
requeue: Lightning notes it, and this callback saves ``last.ckpt`` at the step end before stopping,
so a preempted job that SLURM requeues resumes from the step it was stopped at.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_gen.lightning_adapter import is_accumulating, started_experiment

log = logging.getLogger(__name__)

#: Job names SLURM gives interactive allocations; Lightning does not treat them as SLURM jobs.
INTERACTIVE_JOB_NAMES = ("bash", "interactive")


class RequeueExit(SystemExit):
    """Raised on every rank once the state is saved: ends ``trainer.fit`` and the process.

    A ``SystemExit``, so the CLI exits with its code and no traceback: 0 when the job was
    requeued, 1 when ``scontrol requeue`` failed (the checkpoint is saved either way).
    """


def slurm_job_id(environ: dict[str, str]) -> str | None:
    """The id ``scontrol requeue`` takes: ``<job>`` or, in an array, ``<array job>_<task>``."""
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID") or None


def cluster_plugins(environ: dict[str, str]) -> list:
    """Lightning's SLURM environment without its signal handlers, when Lightning would detect SLURM.

    Lightning treats a process as a SLURM task when ``SLURM_NTASKS`` is set and the job is not
    interactive; there it would install its mid-step USR1 handler unless told not to.
    """
    if "SLURM_NTASKS" in environ and environ.get("SLURM_JOB_NAME") not in INTERACTIVE_JOB_NAMES:
        return [SLURMEnvironment(auto_requeue=False)]
    return []


class SlurmRequeue(Checkpoint):
    """On SIGUSR1: save ``checkpoint_path`` at the next step boundary, requeue the job, exit (on SIGTERM: no requeue).

    A ``Checkpoint`` subclass so that Lightning runs it after every other callback's
    ``on_train_batch_end`` (an EMA update of this step is then part of the saved state).

    Args:
        checkpoint_path (Path): where the state is saved; ``lit_gen.fit`` passes the run's
            ``last.ckpt``, the file ``--resume auto`` reads.
        job_id (str): the SLURM job to requeue (``slurm_job_id()``).
        requeue_signal (signal.Signals, default SIGUSR1): the warning signal SLURM sends.
    """

    def __init__(self, checkpoint_path: str | Path, job_id: str, requeue_signal: signal.Signals = signal.SIGUSR1) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.job_id = job_id
        self.requeue_signal = requeue_signal
        self.signalled = False
        self._previous_handler = None

    @classmethod
    def from_environment(cls, environ: dict[str, str], checkpoint_path: str | Path) -> SlurmRequeue | None:
        """The callback for a task of a SLURM job step (started by ``srun``); None anywhere else.

        A process run directly in the batch script (a sweep trial) gets none: SLURM's USR1 reaches
        job steps only, and requeueing would restart the whole agent.
        """
        if not environ.get("SLURM_STEP_ID") or environ.get("SLURM_JOB_NAME") in INTERACTIVE_JOB_NAMES:
            return None
        job_id = slurm_job_id(environ)
        return cls(checkpoint_path, job_id) if job_id else None

    # ------------------------------------------------------------------ signal
    def _note_signal(self, signum, frame) -> None:
        # Only a flag: the handler may run anywhere inside a step.
        self.signalled = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: SLURM's %s will not trigger a checkpoint", self.requeue_signal.name)
            return
        self._previous_handler = signal.signal(self.requeue_signal, self._note_signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # (When fit ends in an exception Lightning skips this hook and puts back the handlers it found
        # at the start of training, ours included: a late warning then only sets the flag.)
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            # Training is over: a late warning must not kill the process (USR1's default action)
            # while it writes its summary; the time limit ends the job anyway.
            previous = self._previous_handler
            signal.signal(self.requeue_signal, signal.SIG_IGN if previous == signal.SIG_DFL else previous)
            self._previous_handler = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.global_step > 0:
            log.info("SLURM job %s continues at step %d", self.job_id, trainer.global_step)

    # ------------------------------------------------------------------ stop, save, requeue
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if is_accumulating(trainer):  # mid-accumulation is not a step boundary
            return
        # A checkpoint taken after an epoch's last batch but before its end resumes into a replayed
        # epoch (Lightning's loop state); the signal is acted on at the next step instead.
        if trainer.is_last_batch:
            return
        # Ranks see a signal at different moments: all stop at the first step end where any rank has one.
        if not trainer.strategy.reduce_boolean_decision(self.signalled or trainer.received_sigterm, all=False):
            return
        if trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            self._save_requeue_exit(trainer)
        self._save_stop(trainer)

    def _save_stop(self, trainer: L.Trainer) -> None:
        """SIGTERM (scancel, preemption, the time limit itself): save and stop; SLURM decides about a requeue.

        A preempted job that SLURM requeues then resumes from this step instead of the last periodic
        checkpoint; a cancelled one can be continued with ``--run-id``.
        """
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        if trainer.is_global_zero:
            log.info("SIGTERM (job cancelled, preempted or out of time): saved step %d to %s",
                     trainer.global_step, self.checkpoint_path)
        raise SIGTERMException  # what Lightning itself raises on SIGTERM, a step later

    def _save_requeue_exit(self, trainer: L.Trainer) -> None:
        # The requeue makes SLURM send SIGTERM to every task. Lightning's SIGTERM handler runs a
        # collective from inside the handler; the state is safe by then, so the signal is only noted.
        signal.signal(signal.SIGTERM, _ignore_sigterm)
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # every rank; rank 0 writes, then a barrier
        requeued = True
        if trainer.is_global_zero:
            log.info("SLURM time limit near: saved step %d to %s", trainer.global_step, self.checkpoint_path)
            _close_loggers(trainer)
            requeued = self._requeue()
        requeued = trainer.strategy.broadcast(requeued, src=0)
        raise RequeueExit(0 if requeued else 1)

    def _requeue(self) -> bool:
        try:
            result = subprocess.run(["scontrol", "requeue", self.job_id], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("scontrol requeue %s failed (%s)", self.job_id, exc)
            return False
        if result.returncode != 0:
            log.error("scontrol requeue %s failed: %s. The state is saved in %s: resubmit with "
                      "`sbatch slurm/fit.sbatch CONFIG --run-id slurm-%s` to continue the run",
                      self.job_id, result.stderr.strip(), self.checkpoint_path, self.job_id)
            return False
        log.info("requeued SLURM job %s; it resumes from %s", self.job_id, self.checkpoint_path)
        return True


def _ignore_sigterm(signum, frame) -> None:
    pass


def _close_loggers(trainer: L.Trainer) -> None:
    """Flush every logger and finish the W&B run, so nothing buffered is lost when SLURM kills the job."""
    for logger in trainer.loggers:
        logger.save()
        # Only a W&B logger that already started a run has one to finish (reading .experiment would start one).
        experiment = started_experiment(logger)
        if experiment is not None and callable(getattr(experiment, "finish", None)):
            experiment.finish()
