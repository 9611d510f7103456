"""lit_gen's offline W&B sweep engine (``python -m lit_gen.sweep``).

- ``space``: read and validate a W&B sweep file (``load_sweep``) into a ``SweepSpec``.
- ``parameters``: the W&B forms of one parameter, validated into a ``Parameter``.
- ``distributions``: W&B's parameter distributions as quantile functions; grid values.
- ``strategies``: grid, random and bayes (Optuna TPE) suggestions.
- ``hyperband``: W&B's hyperband early termination.
- ``store``: the trial store several agents share (an Optuna journal file).
- ``command``: a trial's argv from the sweep's ``command:`` macros.
- ``runner``: one trial as a subprocess, its metrics watched.
- ``agent``: claim, run, record; ``summary``: the table of trials and the best config.

Importing this package imports neither Optuna nor torch.
"""

from lit_gen.sweeping.space import HyperbandSpec, Metric, Parameter, SweepSpec, load_sweep, parse_sweep

__all__ = ["HyperbandSpec", "Metric", "Parameter", "SweepSpec", "load_sweep", "parse_sweep"]
