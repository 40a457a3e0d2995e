"""The result of loading a pretrained perception network (:class:`LoadedNet`).

Its own module so that the network modules (``bisenet``, ``inception``, ...) can name it
without importing the package ``__init__`` that lazily imports them (no import cycle);
:mod:`gancomp_jax.nets` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class LoadedNet:
    """A pretrained network ready to run.

    Attributes:
        kind: registry name, e.g. ``"inception_fid"``.
        params: pytree of arrays (float32 unless converted otherwise).
        apply: pure function ``apply(params, images, **kw) -> outputs``; the
            expected image layout and range are documented per kind.
        config: JSON-able settings that, together with ``kind``, rebuild
            ``apply`` (saved beside converted parameters).
        source: the file or directory the parameters came from.
    """

    kind: str
    params: Any
    apply: Callable[..., Any]
    config: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def __call__(self, *images: Any, **kw: Any) -> Any:
        """``apply(params, *images, **kw)`` (LPIPS takes two image batches)."""
        return self.apply(self.params, *images, **kw)

    def __iter__(self):
        """``params, apply = net`` unpacks like the ``(params, apply_fn)`` pairs of other loaders."""
        return iter((self.params, self.apply))
