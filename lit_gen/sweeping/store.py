"""The trial store: one folder on a filesystem that every agent of a sweep can reach.

Trials live in an Optuna journal (``journal.log``): an append-only file of JSON operations that
Optuna's ``JournalStorage`` replays, written under a lock file created with ``O_EXCL`` (safe on
NFS v3+ and Lustre, unlike ``fcntl`` locks). Agents on several nodes can therefore share one store.
Choosing a trial's parameters takes a second lock (``claim.lock``) around "read all trials, pick
the next point, create the trial", so two agents never claim the same grid point.

Layout::

    <store>/journal.log        trials: state, final metric, metric per iteration, parameters
    <store>/sweep.yaml         the sweep file this store belongs to (a copy, for people)
    <store>/logs/<trial>.log   each trial's stdout and stderr
    <store>/runs/<name>/<trial>/   the trials' run folders (lit_gen.fit writes them)
    <store>/summary.json, summary.csv   the table of trials and the best config
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_gen.errors import SweepError
from lit_gen.sweeping.space import SweepSpec

log = logging.getLogger(__name__)

STUDY = "sweep"
RUNNING, COMPLETE, PRUNED, FAILED = "running", "complete", "pruned", "failed"


@dataclass
class TrialRecord:
    """One trial as the store holds it.

    ``history`` is the metric at each iteration (one per line of the trial's metrics.jsonl that
    holds the metric); ``value`` the final metric of a complete trial. A trial is ``released``
    when its agent died or was interrupted: it counts as failed, and its grid point is free again.
    """

    number: int
    trial_id: str
    state: str
    params: dict[str, Any]
    value: float | None = None
    history: list[float] = field(default_factory=list)
    coords: dict[str, Any] = field(default_factory=dict)
    grid_index: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    storage_id: int = -1

    @property
    def released(self) -> bool:
        return bool(self.attrs.get("released"))

    @property
    def last_value(self) -> float | None:
        """The final metric, or the last reported one for a pruned or running trial."""
        if self.value is not None:
            return self.value
        return self.history[-1] if self.history else None


class TrialStore:
    """The trials of one sweep in a folder; create it or reopen it with the same sweep file.

    Args:
        directory (str | Path): the store folder (created when missing).
        spec (SweepSpec): the sweep; reopening a store with a different sweep file is an error.
    """

    def __init__(self, directory: str | Path, spec: SweepSpec) -> None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        self.directory = Path(directory).resolve()
        self.spec = spec
        try:
            (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"cannot create the sweep store {self.directory}: {exc}") from None
        journal = str(self.directory / "journal.log")
        self._storage = JournalStorage(JournalFileBackend(journal, lock_obj=JournalFileOpenLock(journal)))
        self._claim_lock = JournalFileOpenLock(str(self.directory / "claim"))
        with self.claim():
            self._study_id = self._open_study()
        self.sweep_id: str = self._storage.get_study_user_attrs(self._study_id)["sweep_id"]

    # ------------------------------------------------------------------------------ opening
    def _open_study(self) -> int:
        from optuna.study import StudyDirection

        config = _jsonable(self.spec.raw)
        try:
            study_id = self._storage.get_study_id_from_name(STUDY)
        except KeyError:
            study_id = self._storage.create_new_study([StudyDirection.MINIMIZE], STUDY)
        attrs = self._storage.get_study_user_attrs(study_id)
        if "sweep_id" not in attrs:
            slug = re.sub(r"[^A-Za-z0-9_]+", "_", self.spec.name).strip("_") or "sweep"
            # A random part keeps W&B run ids unique when one sweep file is run again into a new store.
            self._storage.set_study_user_attr(study_id, "sweep_config", config)
            self._storage.set_study_user_attr(study_id, "sweep_id", f"{slug}-{secrets.token_hex(3)}")
            (self.directory / "sweep.yaml").write_text(yaml.safe_dump(self.spec.raw, sort_keys=False))
            return study_id
        stored = attrs.get("sweep_config")
        if _canonical(stored) != _canonical(config):
            differ = sorted(k for k in set(stored or {}) | set(config)
                            if _canonical((stored or {}).get(k)) != _canonical(config.get(k)))
            raise SweepError(
                f"the store {self.directory} belongs to another sweep config (it differs in: {', '.join(differ)}; "
                f"see {self.directory / 'sweep.yaml'}). Use a new --store for a changed sweep."
            )
        return study_id

    # ------------------------------------------------------------------------------ reading
    @contextmanager
    def claim(self):
        """Hold the claim lock: the trials read inside cannot change by another agent's claim."""
        self._claim_lock.acquire()
        try:
            yield
        finally:
            self._claim_lock.release()

    def trials(self) -> list[TrialRecord]:
        """Every trial of the sweep, by number."""
        frozen = self._storage.get_all_trials(self._study_id, deepcopy=False)
        return [_record(t) for t in sorted(frozen, key=lambda t: t.number)]

    # ------------------------------------------------------------------------------ writing
    def create(self, *, params: dict[str, Any], coords: dict[str, Any], grid_index: int | None,
               attrs: dict[str, Any] | None = None) -> TrialRecord:
        """Add a running trial; call inside ``claim()`` so its number is the count of trials before it."""
        from optuna.trial import TrialState, create_trial

        number = len(self._storage.get_all_trials(self._study_id, deepcopy=False))
        trial_id = f"{self.sweep_id}-{number:03d}"
        now = time.time()
        user_attrs = _jsonable({
            "trial_id": trial_id, "params": params, "coords": coords, "grid_index": grid_index,
            "started_at": now, "heartbeat": now, **(attrs or {}),
        })
        # One journal line creates the trial with everything it needs: no half-made trial is ever visible.
        storage_id = self._storage.create_new_trial(
            self._study_id, template_trial=create_trial(state=TrialState.RUNNING, user_attrs=user_attrs))
        record = _record(self._storage.get_trial(storage_id))
        record.storage_id = storage_id
        assert record.number == number, "trials were created without the claim lock"
        return record

    def _storage_id(self, record: TrialRecord) -> int:
        if record.storage_id < 0:
            record.storage_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, record.number)
        return record.storage_id

    def set_attr(self, record: TrialRecord, key: str, value: Any) -> None:
        self._storage.set_trial_user_attr(self._storage_id(record), key, _jsonable(value))
        record.attrs[key] = value

    def report(self, record: TrialRecord, value: float) -> None:
        """Append the metric of the next iteration of a running trial."""
        self._storage.set_trial_intermediate_value(self._storage_id(record), len(record.history), float(value))
        record.history.append(float(value))

    def heartbeat(self, record: TrialRecord) -> None:
        """Tell other agents that this trial's agent is alive."""
        self.set_attr(record, "heartbeat", time.time())

    def finish(self, record: TrialRecord, state: str, value: float | None = None,
               attrs: dict[str, Any] | None = None) -> bool:
        """Record the end of a trial; False when another agent already released it as stale."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        optuna_state = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAILED: TrialState.FAIL}[state]
        try:
            for key, item in (attrs or {}).items():
                self.set_attr(record, key, item)
            self._storage.set_trial_state_values(
                self._storage_id(record), optuna_state, [float(value)] if state == COMPLETE else None)
        except UpdateFinishedTrialError:
            log.warning("trial %s was released by another agent (no heartbeat); its result is not recorded",
                        record.trial_id)
            return False
        record.state, record.value = state, value if state == COMPLETE else None
        return True

    def release_stale(self, stale_after: float) -> list[TrialRecord]:
        """Mark running trials whose agent sent no heartbeat for ``stale_after`` seconds as failed
        and released (their grid points become free). Call inside ``claim()``."""
        released = []
        now = time.time()
        for record in self.trials():
            beat = record.attrs.get("heartbeat", record.attrs.get("started_at", now))
            if record.state == RUNNING and now - beat > stale_after:
                reason = f"no heartbeat for {now - beat:.0f} s: its agent stopped (killed, preempted or out of time)"
                if self.finish(record, FAILED, attrs={"released": True, "reason": reason}):
                    log.warning("trial %s released: %s", record.trial_id, reason)
                    released.append(record)
        return released


def _record(trial) -> TrialRecord:
    from optuna.trial import TrialState

    state = {TrialState.RUNNING: RUNNING, TrialState.COMPLETE: COMPLETE, TrialState.PRUNED: PRUNED,
             TrialState.FAIL: FAILED, TrialState.WAITING: RUNNING}[trial.state]
    attrs = dict(trial.user_attrs)
    steps = sorted(trial.intermediate_values)
    return TrialRecord(
        number=trial.number,
        trial_id=attrs.pop("trial_id", f"trial-{trial.number}"),
        state=state,
        params=attrs.pop("params", {}),
        value=trial.value if state == COMPLETE else None,
        history=[trial.intermediate_values[s] for s in steps],
        coords=attrs.pop("coords", {}),
        grid_index=attrs.pop("grid_index", None),
        attrs=attrs,
    )


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy (YAML can hold dates and tuples; the journal holds JSON)."""
    return json.loads(json.dumps(value, default=str))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
