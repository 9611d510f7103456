"""The comparison as a W&B Table, logged only when W&B is live.

"Live" means a W&B run is already active in this process, or W&B is configured online (an API key
in ``WANDB_API_KEY`` or ~/.netrc, and ``WANDB_MODE`` not offline/disabled). Otherwise nothing is
imported from wandb and no network is touched: the comparison stays files only.
"""

from __future__ import annotations

import logging
import sys

from lit_gen.comparing.table import Table

log = logging.getLogger(__name__)

OFFLINE_MODES = ("offline", "disabled", "dryrun")


def table_data(table: Table) -> tuple[list[str], list[list]]:
    """Columns and rows for ``wandb.Table``: numbers stay numbers, blanks are None, and a last
    column "blank because" gives each blank's column and reason."""
    columns = list(table.columns) + ["blank because"]
    data = []
    for row in table.rows:
        values, reasons = [], []
        for title, cell in zip(table.columns, row):
            if cell.blank:
                values.append(None)
                if cell.reason:
                    reasons.append(f"{title}: {cell.reason}")
            else:
                values.append(cell.value if isinstance(cell.value, (int, float, str)) else cell.text)
        data.append(values + ["; ".join(reasons)])
    return columns, data


def wandb_target(environ: dict[str, str]) -> str | None:
    """"active" (a run is live), "online" (configured online), or None (offline: files only)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        return "active"
    if environ.get("WANDB_MODE", "").lower() in OFFLINE_MODES:
        return None
    from lit_gen.loggers import _has_api_key

    return "online" if _has_api_key(environ) else None


def log_table(table: Table, environ: dict[str, str], *, project: str = "lit_gen", name: str = "comparison") -> str | None:
    """Log ``table`` to W&B when live (see the module docstring); returns the W&B run's id, or None."""
    target = wandb_target(environ)
    if target is None:
        return None
    import wandb

    columns, data = table_data(table)
    if target == "active":
        wandb.run.log({name: wandb.Table(columns=columns, data=data)})
        return wandb.run.id
    run = wandb.init(project=environ.get("WANDB_PROJECT", project), job_type="compare", name=name)
    try:
        run.log({name: wandb.Table(columns=columns, data=data)})
        return run.id
    finally:
        run.finish()
