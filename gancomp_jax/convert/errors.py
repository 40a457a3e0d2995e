"""Errors raised while importing PyTorch StyleGAN2 checkpoints.

All are ``ValueError`` subclasses whose message starts with the source file, so callers (the
CLI, jobs) can print them as one line without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConversionError",
    "NetworkNotFoundError",
    "UnrecognizedFileError",
    "UnsupportedNetworkError",
]


class ConversionError(ValueError):
    """A checkpoint could not be converted (base class)."""


class UnrecognizedFileError(ConversionError):
    """Neither an NVlabs network pickle nor a rosinality checkpoint, or truncated/corrupt."""


class UnsupportedNetworkError(ConversionError):
    """A network the converter cannot represent (StyleGAN3, other classes, odd kwargs)."""


class NetworkNotFoundError(ConversionError, KeyError):
    """A requested network (``G``, ``G_ema``, ``D``) is not in the file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
