"""What every command-line module shares: logging set-up and turning user errors into exit code 2."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from lit_gen.errors import LitGenError

EXIT_USER_ERROR = 2


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Lightning repeats these hints on every run; they are answered by lit_gen's own choices.
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*isinstance.*treespec.*",
                    ".*Experiment logs directory.*exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=pattern)


def run_main(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)``; a LitGenError prints one line on stderr and exits with code 2, no traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = main(args)
    except LitGenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
