"""Pieces shared by the NVlabs and rosinality converters."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from gancomp_jax.convert.errors import UnsupportedNetworkError
from gancomp_jax.models.network import Network
from gancomp_jax.models.nvlabs_compat import from_nvlabs_state_dict
from gancomp_jax.models.registry import abstract_variables

__all__ = ["Converted", "build_network", "count_parameters"]


@dataclasses.dataclass
class Converted:
    """One converted network plus what was learned on the way.

    ``facts`` is JSON-serialisable (it goes into the checkpoint's metadata); ``warnings`` are
    one-line, human-readable.
    """

    network: Network
    facts: dict[str, Any]
    warnings: list[str]


def count_parameters(variables: Mapping[str, Any]) -> int:
    """Number of scalars in the ``params`` collection (buffers such as noise maps not counted)."""
    flat = traverse_util.flatten_dict(dict(variables.get("params", {})))
    return int(sum(np.size(v) for v in flat.values()))


def build_network(kind: str, config, state_dict: Mapping[str, np.ndarray], where: str) -> Network:
    """Our variables from an NVlabs-named ``state_dict``, shape-checked against ``config``."""
    template = abstract_variables(kind, config)
    try:
        variables = from_nvlabs_state_dict(state_dict, template, where)
    except ValueError as e:
        raise UnsupportedNetworkError(str(e)) from None
    return Network(kind, config, variables)
