"""Checkpoint readers: PyTorch files -> numpy, without executing code from the files."""

from .nvlabs_pkl import NetworkRecord, get_network, load_nvlabs_pkl
from .rosinality_pt import load_rosinality_pt
from .torch_pickle import (
    AllocationLimitError,
    CheckpointFormatError,
    RestrictedUnpickler,
    UnsafePickleError,
    default_max_alloc,
    load_torch_file,
)

__all__ = [
    "AllocationLimitError",
    "CheckpointFormatError",
    "NetworkRecord",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "default_max_alloc",
    "get_network",
    "load_nvlabs_pkl",
    "load_rosinality_pt",
    "load_torch_file",
]
