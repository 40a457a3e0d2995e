"""Feature networks for the metrics, built from the weight files users give.

* ``inception_detector(path, convention)``: Inception-v3 (pytorch-fid's layout and weights,
  :mod:`gancomp_jax.nets.inception`) on uint8 images, 2048-d pool features (FID, KID) or class
  probabilities without the output bias (IS, NVlabs ``no_output_bias=True``).

  - ``'pytorch_fid'``: ``x/255`` then pytorch-fid's bilinear resize to 299
    (``align_corners=False``) and ``2x − 1`` — exactly ``python -m pytorch_fid``.
  - ``'nvlabs'``: bilinear resize (same kernel) of the ``[0, 255]`` image to 299, then
    ``(x − 128)/128`` — the normalisation of NVlabs' TorchScript ``inception-2015-12-05.pt``;
    its in-graph TensorFlow resize is approximated by the half-pixel bilinear resize.

* ``vgg16_detector(path)``: VGG16 fc7 features (4096-d, ReLU output of ``classifier.3``) for
  precision/recall. NVlabs uses the fc7 of its TorchScript ``vgg16.pt`` (Caffe VGG16 weights via
  StyleGAN's TF network, resizing uint8 input to 224 inside); here torchvision's VGG16 weights
  (``vgg16-397923af.pth``) with bilinear resize to 224 and ImageNet mean/std
  (:mod:`gancomp_jax.nets.vgg_lpips`): same architecture and role, different weights and input
  pipeline, so precision/recall values are close in meaning but not interchangeable.
* ``lpips_fn(vgg16_path, heads_path)``: LPIPS v0.1 (VGG trunk from torchvision's file, linear
  heads from lpips' ``weights/v0.1/vgg.pth``, by default the installed ``lpips`` package's) for
  PPL, ``(params, x0, x1) -> [N]`` on [-1, 1] images. NVlabs' ``vgg16.pt`` computes the LPIPS
  of StyleGAN's ``vgg16_zhang_perceptual`` network; values agree in meaning, not exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gancomp_jax.metrics.runner import Detector
from gancomp_jax.metrics.stats_cache import file_fingerprint

CONVENTIONS = ("nvlabs", "pytorch_fid")


def _need(path, what: str, metric: str | None = None):
    if not path:
        raise ValueError(f"{metric or 'this metric'} needs {what}; pass its file path")
    return path


def inception_preprocess(images_u8, convention: str):
    """uint8 ``[N, H, W, 3]`` → the Inception input ``[N, 299, 299, 3]`` of ``convention``."""
    from gancomp_jax.nets.preprocess import resize_bilinear
    x = jnp.asarray(images_u8, jnp.float32)
    if convention == "pytorch_fid":
        x = resize_bilinear(x / 255.0, (299, 299))
        return 2.0 * x - 1.0
    if convention == "nvlabs":
        x = resize_bilinear(x, (299, 299))
        return (x - 128.0) / 128.0
    raise ValueError(f"Inception convention must be one of {CONVENTIONS}, got {convention!r}")


def inception_detector(path, convention: str = "nvlabs", output: str = "pool", net=None) -> Detector:
    """Inception :class:`Detector`; ``output`` is ``'pool'`` ``[N, 2048]`` or ``'probs'`` ``[N, 1008]``
    (softmax of the logits without the fc bias). ``net``: an already loaded ``LoadedNet``."""
    from gancomp_jax import nets
    from gancomp_jax.nets import inception as inc
    if convention not in CONVENTIONS:
        raise ValueError(f"Inception convention must be one of {CONVENTIONS}, got {convention!r}")
    if output not in ("pool", "probs"):
        raise ValueError(f"Inception output must be 'pool' or 'probs', got {output!r}")
    if net is None:
        net = nets.load("inception_fid", _need(path, "an Inception weight file (pytorch-fid's "
                                                     "pt_inception-2015-12-05-6726825d.pth)"))

    def fn(variables, images):
        out = inc.apply(variables, inception_preprocess(images, convention), preprocess="none")
        if output == "pool":
            return out["pool"]
        kernel = variables["params"]["fc"]["kernel"]  # [2048, 1008]
        return jax.nn.softmax(out["pool"] @ kernel, axis=-1)

    return Detector(name=f"inception_{output}", fn=fn, params=net.params,
                    cache_key=("inception_fid", file_fingerprint(net.source or path), convention, output))


def vgg16_detector(path, net=None) -> Detector:
    """VGG16 fc2 features ``[N, 4096]`` of uint8 images (precision/recall)."""
    from gancomp_jax import nets
    if net is None:
        net = nets.load("vgg16", _need(path, "VGG16 weights (torchvision vgg16-397923af.pth)"))
    if not net.config.get("classifier", True):
        raise ValueError(f"{net.source}: precision/recall needs VGG16's classifier layers (fc7), "
                         f"which this file does not hold")
    apply = net.apply

    def fn(params, images):
        x = jnp.asarray(images, jnp.float32) / 127.5 - 1.0  # [-1, 1]; the net resizes to 224
        return apply(params, x)["fc7"]

    return Detector(name="vgg16", fn=fn, params=net.params,
                    cache_key=("vgg16", file_fingerprint(net.source or path)))


def lpips_fn(vgg16_path, heads_path=None, net=None):
    """``(lpips(params, x0, x1) -> [N], params)`` for LPIPS-VGG on NHWC images in [-1, 1]."""
    from gancomp_jax import nets
    if net is None:
        net = nets.load("lpips_vgg", _need(vgg16_path, "VGG16 weights for LPIPS (torchvision vgg16-397923af.pth)"),
                        lin_path=heads_path or None)
    apply = net.apply

    def lpips(params, x0, x1):
        d = apply(params, x0, x1)
        return jnp.reshape(d, (d.shape[0],))

    return lpips, net.params
