"""Exceptions the trainer raises for the command line to print as one line (no jax import)."""


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/Inf; the run stopped and the last verified checkpoint stays."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message names the step, the last checkpoint and how to resume."""


class TrainingDataError(ValueError):
    """An image of the training data could not be read mid-run (bad input, printed as one
    ``error:`` line); the message names the file, the checkpoint written at the step reached and
    how to resume."""
