"""Turn a sweep's ``command:`` and one trial's parameters into an argv, as a W&B agent does.

Macros are whole list items, expanded like ``wandb agent`` expands them:

==========================  ===============================================================
``${env}``                  ``/usr/bin/env`` (dropped where it does not exist)
``${interpreter}``          this Python (``sys.executable``; W&B writes ``python``)
``${program}``              the sweep's ``program:``
``${args}``                 ``--key=value`` per top-level parameter
``${args_no_hyphens}``      ``key=value``
``${args_no_equals}``       ``--key value``
``${args_no_boolean_flags}``  ``--key=value``, ``--key`` for true and nothing for false
``${args_append_hydra}``    ``+key=value``;  ``${args_override_hydra}``: ``++key=value``
``${args_json}``            one argument: the parameters as JSON
``${args_json_file}``       the path of a JSON file holding the parameters
==========================  ===============================================================

Values are formatted with ``str()`` as W&B does, so a nested parameter arrives as one dict literal
(``model={'beta': 0.5, 'latent_dim': 8}``), and ``${envvar:NAME}`` inside an item is replaced by
the environment variable. The offline engine adds its own arguments in the style of the first
key=value macro: ``--run-id <trial>`` before the parameters, then ``run.output_dir=<store>/runs``
and ``logger.group=<sweep id>`` after them.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from lit_gen.errors import SweepError
from lit_gen.sweeping.space import SweepSpec

FLAG_MACROS = ("args", "args_no_hyphens", "args_no_equals", "args_no_boolean_flags",
               "args_append_hydra", "args_override_hydra")
_ENVVAR = re.compile(r"\$\{envvar:([A-Za-z0-9_]*)\}")


def format_flags(style: str, items: dict[str, Any]) -> list[str]:
    """``items`` formatted as the ``${style}`` macro formats them."""
    out: list[str] = []
    for key, value in items.items():
        text = f"{key}={value}"
        if style == "args":
            out.append("--" + text)
        elif style == "args_no_hyphens":
            out.append(text)
        elif style == "args_no_equals":
            out += ["--" + key, str(value)]
        elif style == "args_no_boolean_flags":
            if value is True:
                out.append("--" + key)
            elif value is not False:
                out.append("--" + text)
        elif style == "args_append_hydra":
            out.append("+" + text)
        elif style == "args_override_hydra":
            out.append("++" + text)
        else:
            raise ValueError(f"not a flag macro: {style}")
    return out


def flag_style(spec: SweepSpec) -> str | None:
    """The first key=value macro of the command (where the engine adds its own arguments)."""
    for item in spec.command:
        if item.startswith("${") and item[2:-1] in FLAG_MACROS:
            return item[2:-1]
    return None


def require_flag_style(spec: SweepSpec) -> str:
    """The command's flag macro; a SweepError when it has none, since then no run folder can be passed."""
    style = flag_style(spec)
    if style is None:
        raise SweepError(
            f"{spec.source}: the command has no ${{args}}, ${{args_no_hyphens}} or ${{args_no_equals}}; the offline "
            "engine needs one to pass each trial its parameters, --run-id and run.output_dir"
        )
    return style


def build_argv(spec: SweepSpec, config: dict[str, Any], *, run_id: str | None = None,
               extras: dict[str, Any] | None = None, json_file: Path | None = None,
               display: bool = False) -> list[str]:
    """The argv of one trial.

    Args:
        spec: the sweep.
        config: the run config (``spec.nest(params)``: top-level keys, nested ones as dicts).
        run_id: passed as ``--run-id`` before the parameters when given.
        extras: more overrides after the parameters (run.output_dir, logger.group).
        json_file: where ``${args_json_file}`` writes the parameters (required when used).
        display: for people: ``python`` for ``${interpreter}`` and no ``${env}``.
    """
    style = flag_style(spec)
    argv: list[str] = []
    for item in spec.command:
        macro = item[2:-1] if item.startswith("${") and item.endswith("}") and not item.startswith("${envvar:") else None
        if macro is None:
            argv.append(_ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), item))
        elif macro == "env":
            if not display and os.path.exists("/usr/bin/env"):
                argv.append("/usr/bin/env")
        elif macro == "interpreter":
            argv.append("python" if display else sys.executable)
        elif macro == "program":
            argv.append(str(spec.program))
        elif macro in FLAG_MACROS:
            if macro == style and run_id is not None:
                argv += ["--run-id", run_id]
            argv += format_flags(macro, config)
            if macro == style and extras:
                argv += format_flags(macro, extras)
        elif macro == "args_json":
            argv.append(json.dumps(config))
        elif macro == "args_json_file":
            if json_file is None:
                raise ValueError("${args_json_file} needs json_file")
            if not display:
                json_file.parent.mkdir(parents=True, exist_ok=True)
                json_file.write_text(json.dumps(config))
            argv.append(str(json_file))
        else:  # space.py refuses unknown macros
            raise AssertionError(f"unhandled macro {item}")
    return argv
