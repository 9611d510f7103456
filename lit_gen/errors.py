"""Errors a user can cause and fix. The command-line modules print them as one message and exit 2."""


class LitGenError(Exception):
    """Base class of every error lit_gen raises for a problem in the user's input."""


class ConfigError(LitGenError):
    """A config file or override is malformed, names an unknown key or class, or has a wrong value."""


class DataError(LitGenError):
    """A dataset is missing, truncated or not in the expected format."""


class CheckpointError(LitGenError):
    """A checkpoint is missing, unreadable, corrupt or of another family than expected."""


class SweepError(LitGenError):
    """A sweep file does not follow the W&B sweep schema, or its values are impossible."""


class TrainingError(LitGenError):
    """Training cannot go on (for example, the loss stayed non-finite for too many steps)."""


class EvaluationError(LitGenError):
    """An evaluation cannot run as asked (missing feature weights, too few real images, wrong options)."""
