"""ONNX export of a deployable forward function through jax2onnx (opset 18).

The function is first re-traced by :func:`gancomp_jax.deploy.lowering.expressible` (``lax.pad``
rewritten, ``custom_vjp`` inlined; see there for why), then converted by ``jax2onnx.to_onnx``
with the weights as initializers, checked with ``onnx.checker`` and saved.

Opset 18 rather than 17: jax2onnx 0.17.1 emits ``ReduceMean`` with its axes as an input (the
opset-18 form) even when asked for opset 17, which ``onnx.checker`` then rejects.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Sequence

import jax
import numpy as np

from gancomp_jax.deploy.forward import InputSpec
from gancomp_jax.deploy.lowering import expressible

OPSET = 18
BATCH_DIM = "N"


@contextlib.contextmanager
def _quiet_converter():
    """jax2onnx logs a warning per optional plugin whose package is absent (equinox, dm_pix) and
    onnx_ir one per untyped shape constant; neither concerns this graph."""
    names = ("jax2onnx", "onnx_ir")
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in old.items():
            logging.getLogger(n).setLevel(level)


def _jax2onnx_inputs(specs: Sequence[InputSpec], batch: int | None):
    out = []
    for s in specs:
        shape = tuple((BATCH_DIM if batch is None else batch) if d is None else d for d in s.shape)
        out.append(jax.ShapeDtypeStruct(shape, np.dtype(s.dtype)) if not shape else shape)
    return out


def export_onnx(fn: Callable, specs: Sequence[InputSpec], batch: int | None, model_name: str = "generator",
                metadata: dict[str, str] | None = None) -> bytes:
    """``fn`` as a checked ONNX model, serialized; ``batch=None`` gives a dynamic batch dimension ``N``.

    ``metadata`` goes into the model's ``metadata_props``. Conversion happens in memory, so the
    caller can write the bytes in one short step.
    """
    import onnx
    from jax2onnx import to_onnx

    with _quiet_converter():
        model = to_onnx(expressible(fn), _jax2onnx_inputs(specs, batch), opset=OPSET,
                        model_name=model_name, input_names=[s.name for s in specs], output_names=["image"])
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
