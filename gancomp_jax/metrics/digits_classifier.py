"""The embedded digits' own evaluation network: a small CNN classifier, and ``fid_digits``.

No Inception weights exist offline, so for the embedded dataset (scikit-learn digits, tinted
per class, 32×32 RGB; :class:`gancomp_jax.data.DigitsSource`) the project trains its own
classifier, deterministically, in seconds on a CPU, and caches it under
``$GANCOMP_CACHE_DIR`` (default ``~/.cache/gancomp_jax``) as ``digits_classifier-v1-<md5>.npz``
(the md5 covers the architecture and training settings); the result of that training ships
with the package as ``digits_classifier_v1.npz`` (≈ 230 kB), so nothing is trained at run time
unless the settings change (``python -m gancomp_jax.metrics.digits_classifier`` re-trains).

Network (flax linen, NHWC): uint8 → ``x/127.5 − 1`` → [conv3×3 32, ReLU, 2×2 avg-pool] →
[conv3×3 64, ReLU, 2×2 avg-pool] → [conv3×3 64, ReLU] → global average → **features [N, 64]**
→ dense 10 (logits). Inputs that are not 32×32 are resized bilinearly first.
Training: items with ``index % 5 != 0`` (1437 images), Adam(2e-3), batch 64, 20 epochs in a
fixed order from ``RandomState(0)``. Each training image is the grey digit tinted with a
*random* class colour, so the class must be read from the shape (the data's own tint would
give it away); the features still see colour. The other 360 items (with their true tint)
give the reported held-out accuracy.

Scores (never called FID — the feature network is not Inception):

* ``fid_digits``: the Fréchet distance (NVlabs formula: float64, biased covariance,
  ``scipy.linalg.sqrtm``) between the 64-d features of generated images and of all 1797 real
  digits.
* ``class_accuracy_digits`` (conditional generators): the share of samples the classifier
  assigns to the class the generator was asked for (:func:`class_accuracy`).
* class coverage: the share of each predicted digit among generated samples
  (``digits_class_shares``, 10 numbers summing to 1), ``digits_classes_present`` (classes with a
  share ≥ 1 %) and ``digits_coverage`` = ``Σ_k min(share_k, 0.1)`` (1.0 when every class has at
  least its real share of 10 %; lower when classes are missing or rare).

This network is separate from anything the quickstart distils with.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from gancomp_jax.metrics.runner import Detector

VERSION = 1
NUM_CLASSES = 10
RESOLUTION = 32
TRAIN = dict(epochs=20, batch_size=64, lr=2e-3, seed=0, widths=(32, 64, 64), holdout_every=5,
             random_tint=True)


class DigitsClassifier(nn.Module):
    """Small CNN: uint8/float images ``[N, H, W, 3]`` (0..255) → ``(features [N, 64], logits [N, 10])``."""

    widths: tuple[int, ...] = (32, 64, 64)

    @nn.compact
    def __call__(self, images):
        x = jnp.asarray(images, jnp.float32)
        if x.shape[1:3] != (RESOLUTION, RESOLUTION):
            from gancomp_jax.nets.preprocess import resize_bilinear
            x = resize_bilinear(x, (RESOLUTION, RESOLUTION))
        x = x / 127.5 - 1.0
        for i, w in enumerate(self.widths):
            x = nn.relu(nn.Conv(w, (3, 3), padding="SAME", name=f"conv{i}")(x))
            if i < len(self.widths) - 1:
                x = nn.avg_pool(x, (2, 2), (2, 2))
        features = x.mean(axis=(1, 2))
        logits = nn.Dense(NUM_CLASSES, name="fc")(features)
        return features, logits


def _digits_arrays(tint: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[1797, 32, 32, 3]`` digits (tinted per class, or grey) and int32 labels."""
    from gancomp_jax.data.digits import DigitsSource
    src = DigitsSource(RESOLUTION, tint=tint)
    items = [src[i] for i in range(len(src))]
    return np.stack([it["image"] for it in items]), np.asarray([it["label"] for it in items], np.int32)


def _retint(grey: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Each grey image tinted with a random class colour (so colour alone cannot tell the class)."""
    from gancomp_jax.data.digits import PALETTE
    colours = PALETTE[rng.randint(len(PALETTE), size=len(grey))] / 255.0
    return np.rint(grey[..., :1].astype(np.float32) * colours[:, None, None, :]).astype(np.uint8)


def _cache_file() -> Path:
    root = os.environ.get("GANCOMP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gancomp_jax")
    tag = hashlib.md5(json.dumps(dict(TRAIN, version=VERSION), sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / f"digits_classifier-v{VERSION}-{tag}.npz"


def train_classifier(progress: bool = True) -> tuple[dict, float]:
    """Trains the classifier (deterministic); returns ``(params, held-out accuracy)``."""
    images, labels = _digits_arrays(tint=True)
    grey, _ = _digits_arrays(tint=False)
    idx = np.arange(len(labels))
    train_idx, test_idx = idx[idx % TRAIN["holdout_every"] != 0], idx[idx % TRAIN["holdout_every"] == 0]
    model = DigitsClassifier(tuple(TRAIN["widths"]))
    params = model.init(jax.random.key(TRAIN["seed"]), images[:1])["params"]
    tx = optax.adam(TRAIN["lr"])
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        def loss_fn(p):
            _, logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, g = jax.value_and_grad(loss_fn)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, loss

    rng = np.random.RandomState(TRAIN["seed"])
    bs = TRAIN["batch_size"]
    nb = len(train_idx) // bs
    for epoch in range(TRAIN["epochs"]):
        order = train_idx[rng.permutation(len(train_idx))]
        for b in range(nb):
            sel = order[b * bs:(b + 1) * bs]
            x = _retint(grey[sel], rng) if TRAIN["random_tint"] else images[sel]
            params, opt, loss = step(params, opt, x, labels[sel])
        if progress:
            logging.info("digits classifier epoch %d loss %.4f", epoch + 1, float(loss))
    _, logits = model.apply({"params": params}, images[test_idx])
    acc = float((np.asarray(logits).argmax(1) == labels[test_idx]).mean())
    return jax.tree.map(np.asarray, params), acc


SHIPPED = Path(__file__).with_name("digits_classifier_v1.npz")


def _read(path: Path) -> tuple[dict, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as f:
        flat = {k: f[k] for k in f.files}
    info = json.loads(str(flat.pop("__info__")))
    params: dict = {}
    for k, v in flat.items():
        node = params
        parts = k.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return params, info


def save_classifier(path: Path, params, info) -> None:
    """Writes ``params`` and ``info`` to ``path`` (``.npz``, atomically)."""
    flat = {"/".join(k): np.asarray(v) for k, v in _flatten(params)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.npz")
    np.savez(tmp, __info__=np.asarray(json.dumps(info)), **flat)
    os.replace(tmp, path)


def load_classifier(train_if_missing: bool = True) -> tuple[dict, dict[str, Any]]:
    """The classifier ``(params, info)``: the file shipped with the package (made by
    :func:`train_classifier` with today's ``TRAIN``), else the user's cache, else it is trained
    now (deterministic) and cached."""
    for path in (SHIPPED, _cache_file()):
        if path.is_file():
            params, info = _read(path)
            if info.get("version") == VERSION and info.get("train") == json.loads(json.dumps(TRAIN)):
                return params, info
    path = _cache_file()
    if not train_if_missing:
        raise FileNotFoundError(f"digits classifier not trained yet ({path})")
    logging.info("training the digits evaluation classifier (once; cached at %s)", path)
    params, acc = train_classifier()
    info = dict(version=VERSION, train=TRAIN, heldout_accuracy=acc)
    save_classifier(path, params, info)
    return params, json.loads(json.dumps(info))


def _flatten(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flatten(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def digits_detector(output: str = "features") -> Detector:
    """:class:`Detector` over the classifier: ``'features'`` ``[N, 64]`` or ``'logits'`` ``[N, 10]``."""
    params, info = load_classifier()
    model = DigitsClassifier(tuple(TRAIN["widths"]))
    pick = 0 if output == "features" else 1

    def fn(p, images):
        return model.apply({"params": p}, images)[pick]
    return Detector(name=f"digits_{output}", fn=fn, params=params,
                    cache_key=("digits_classifier", info["version"], json.dumps(info["train"], sort_keys=True)))


def class_coverage(logits, num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Share of each predicted class among samples, classes with share ≥ 1 %, and
    ``coverage = Σ_k min(share_k, 1/K)``."""
    pred = np.asarray(logits).argmax(axis=1)
    shares = np.bincount(pred, minlength=num_classes)[:num_classes] / max(len(pred), 1)
    return dict(digits_class_shares=[round(float(s), 5) for s in shares],
                digits_classes_present=int((shares >= 0.01).sum()),
                digits_coverage=float(np.minimum(shares, 1.0 / num_classes).sum()))


def class_accuracy(logits, requested, num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Agreement of the classifier with the requested classes of a conditional generator.

    ``logits [N, K]``, ``requested int [N]`` → ``class_accuracy_digits`` (share of samples whose
    arg-max class is the requested one) and ``class_accuracy_digits_per_class`` (the same per
    requested class; ``None`` for a class never requested).
    """
    pred = np.asarray(logits).argmax(axis=1)
    req = np.asarray(requested).astype(np.int64).reshape(-1)
    if pred.shape != req.shape:
        raise ValueError(f"{len(pred)} predictions for {len(req)} requested classes")
    hit = pred == req
    per = [float(hit[req == k].mean()) if np.any(req == k) else None for k in range(num_classes)]
    return dict(class_accuracy_digits=float(hit.mean()) if len(hit) else float("nan"),
                class_accuracy_digits_per_class=per)


def digits_classifier_logits(features) -> np.ndarray:
    """Class logits ``[N, 10]`` from the classifier's features ``[N, 64]`` (its last layer)."""
    params, _ = load_classifier()
    fc = params["fc"]
    return np.asarray(features, np.float32) @ np.asarray(fc["kernel"]) + np.asarray(fc["bias"])


if __name__ == "__main__":  # re-train and write the shipped file
    _params, _acc = train_classifier()
    save_classifier(SHIPPED, _params, dict(version=VERSION, train=TRAIN, heldout_accuracy=_acc))
    print(f"wrote {SHIPPED} (held-out accuracy {_acc:.4f})")
