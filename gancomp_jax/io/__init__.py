"""Checkpoint readers: PyTorch files -> numpy, without executing code from the files."""

from .nvlabs_pkl import NetworkRecord, get_network, load_nvlabs_pkl
from .rosinality_pt import load_rosinality_pt
from .torch_pickle import (
    CheckpointFormatError,
    RestrictedUnpickler,
    UnsafePickleError,
    load_torch_file,
)

__all__ = [
    "CheckpointFormatError",
    "NetworkRecord",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "get_network",
    "load_nvlabs_pkl",
    "load_rosinality_pt",
    "load_torch_file",
]
