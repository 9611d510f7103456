"""What every command-line module shares: logging set-up and turning user errors into exit code 2."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from lit_gen.errors import LitGenError

EXIT_USER_ERROR = 2


class _DropAdverts(logging.Filter):
    """Lightning's log lines that advertise other products or restate the default."""

    NOISE = ("litlogger", "`weights_only` was not set")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


class _CurrentStderr(logging.StreamHandler):
    """A console handler that writes to whatever ``sys.stderr`` is now (it may be replaced after set-up)."""

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(fmt))
        self.addFilter(_DropAdverts())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _install(logger: logging.Logger, fmt: str) -> None:
    if not any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        logger.addHandler(_CurrentStderr(fmt))


def setup_logging(verbose: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    _install(root, "%(levelname)s %(name)s: %(message)s")

    # Lightning repeats these hints on every run; they are answered by lit_gen's own choices.
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*isinstance.*treespec.*",
                    ".*Experiment logs directory.*exists and is not empty.*", ".*srun. command is available.*",
                    ".*Checkpoint directory .* exists and is not empty.*", ".*set_vital.*",
                    ".*smaller than the logging interval.*",
                    # train/* epoch values are already averaged over ranks (the module adds each rank's running
                    # sums once per epoch); sync_dist would reduce them a second time.
                    ".*It is recommended to use .self.log\\(.train/.*sync_dist=True.*"):
        warnings.filterwarnings("ignore", message=pattern)


def tame_lightning_logging() -> None:
    """Call after importing lightning: its own console handler would print every line twice."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        own = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for handler in own:
            logger.removeHandler(handler)
        if own or logger.handlers:
            logger.propagate = False
            _install(logger, "%(levelname)s: %(message)s")


def one_line(message: str) -> str:
    """A message on one line: parsers' multi-line reports (YAML's position and caret) joined with spaces,
    so scripts and SLURM logs that read the last line of stderr get all of it."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip() and part.strip() != "^")


def run_main(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)``; a LitGenError prints one line on stderr and exits with code 2, no traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = main(args)
    except LitGenError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
