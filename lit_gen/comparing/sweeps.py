"""A sweep store seen by the comparison: trials sorted by the sweep metric, a parallel-coordinates
plot of parameters against the metric, and parameter importances from Optuna's evaluator.

The store's journal keeps each trial's parameters as attributes (the sweep strategies choose them,
not Optuna), so the importances are computed on an in-memory Optuna study rebuilt from the complete
trials, with a distribution per parameter spanning the values the sweep tried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_gen.errors import SweepError
from lit_gen.sweeping.store import COMPLETE, TrialRecord


@dataclass
class SweepView:
    """A store's trials in metric order (best first; trials without a value last)."""

    store: Path
    name: str
    metric: str | None
    goal: str
    trials: list[TrialRecord]

    @property
    def run_dirs(self) -> list[Path]:
        dirs = [Path(t.attrs["run_dir"]) for t in self.trials if t.attrs.get("run_dir")]
        return [d for d in dirs if (d / "config.yaml").is_file()]


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"beta": 1}}`` -> ``{"model.beta": 1}``."""
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, name + "."))
        else:
            out[name] = value
    return out


def read_sweep(store: str | Path) -> SweepView:
    """Open a sweep store (the folder ``lit_gen.sweep --store`` wrote) and sort its trials."""
    from lit_gen.sweeping.space import load_sweep
    from lit_gen.sweeping.store import TrialStore

    store = Path(store)
    if not (store / "journal.log").is_file() or not (store / "sweep.yaml").is_file():
        raise SweepError(f"{store} is not a sweep store (no journal.log and sweep.yaml); pass the --store folder "
                         "of python -m lit_gen.sweep")
    spec = load_sweep(store / "sweep.yaml")
    trials = TrialStore(store, spec).trials()
    goal = spec.metric.goal if spec.metric else "minimize"
    sign = 1.0 if goal == "minimize" else -1.0

    def key(t: TrialRecord):
        value = t.last_value
        usable = value is not None and math.isfinite(value)
        return (0 if t.state == COMPLETE and usable else 1 if usable else 2, sign * value if usable else 0.0, t.number)

    return SweepView(store, spec.name, spec.metric.name if spec.metric else None, goal, sorted(trials, key=key))


def _log_scale(lo: float, hi: float) -> bool:
    """Values spanning two decades or more (all positive) are read on a log scale."""
    return lo > 0 and hi / lo >= 100


def complete_trials(view: SweepView) -> list[tuple[dict[str, Any], float]]:
    return [(flat_params(t.params), t.value) for t in view.trials
            if t.state == COMPLETE and t.value is not None and math.isfinite(t.value)]


def param_importances(view: SweepView) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's fANOVA parameter importances over the complete trials (they sum to 1), or a reason."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    done = complete_trials(view)
    if len(done) < 2:
        return None, f"importances need at least 2 complete trials, the store has {len(done)}"
    names = sorted({k for params, _ in done for k in params})
    distributions = {}
    for name in names:
        values = [params.get(name) for params, _ in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            lo, hi = float(min(values)), float(max(values))
            # fANOVA weighs a parameter's range by volume: a learning rate over decades must be on a log scale,
            # or the decades below the largest one shrink to nothing.
            distributions[name] = FloatDistribution(lo, hi, log=_log_scale(lo, hi))
        else:
            distributions[name] = CategoricalDistribution(sorted({str(v) for v in values}))
    varied = [n for n in names if len({str(p.get(n)) for p, _ in done}) > 1]
    if not varied:
        return None, "every complete trial has the same parameters"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize" if view.goal == "minimize" else "maximize")
    for params, value in done:
        values = {n: (float(params[n]) if isinstance(distributions[n], FloatDistribution) else str(params.get(n)))
                  for n in names}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions, value=value))
    try:
        # fANOVA, seeded (its random forest would otherwise change the figures from one report to the next).
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied)
    except (RuntimeError, ValueError) as exc:
        return None, f"Optuna could not compute importances: {exc}"
    return dict(importances), None


def plot_parallel_coordinates(view: SweepView, path: Path) -> tuple[Path | None, str]:
    """One vertical axis per parameter (scaled to its range; categories evenly spaced) and the
    metric last; one line per complete trial, coloured by the metric."""
    done = complete_trials(view)
    if not done:
        return None, "no complete trial to draw"
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    names = sorted({k for params, _ in done for k in params})
    axes_values = []
    labels = []
    for name in names + ["__metric__"]:
        values = [v if name == "__metric__" else params.get(name) for params, v in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            lo, hi = min(values), max(values)
            use_log = _log_scale(lo, hi)
            f = (lambda v: math.log10(v)) if use_log else (lambda v: v)
            span = (f(hi) - f(lo)) or 1.0
            axes_values.append([(f(v) - f(lo)) / span for v in values])
            labels.append(f"{name if name != '__metric__' else view.metric}\n[{lo:.3g}, {hi:.3g}]{' log' if use_log else ''}")
        else:
            categories = sorted({str(v) for v in values})
            step = 1.0 / max(len(categories) - 1, 1)
            axes_values.append([categories.index(str(v)) * step for v in values])
            labels.append(f"{name}\n{' | '.join(categories)}")
    metric = [v for _, v in done]
    lo, hi = min(metric), max(metric)
    cmap = colormaps["viridis_r" if view.goal == "minimize" else "viridis"]
    figure = Figure(figsize=(max(4.0, 1.6 * len(labels)), 3.8), dpi=110)
    ax = figure.add_subplot()
    xs = list(range(len(labels)))
    for i, value in enumerate(metric):
        ax.plot(xs, [axis[i] for axis in axes_values], color=cmap((value - lo) / ((hi - lo) or 1.0)), alpha=0.8)
    for x in xs:
        ax.axvline(x, color="black", linewidth=0.6)
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"{view.name}: parameters against {view.metric} (best trials in yellow)", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path, f"{len(done)} complete trials; each axis spans the values tried."
