"""Fréchet Inception Distance (Heusel et al. 2017) as NVlabs and pytorch-fid compute it.

``FID = ‖μ_g − μ_r‖² + Tr(Σ_g + Σ_r − 2·sqrtm(Σ_g Σ_r))`` with float64 statistics and
``scipy.linalg.sqrtm``.

Two conventions (``convention=``):

* ``'nvlabs'`` (stylegan2-ada-pytorch ``frechet_inception_distance.py``): biased covariance
  (``Σxᵀx/N − μμᵀ``), the real part of the whole expression, no ε retry. Generated images are
  quantised ``clip(x·127.5+128, 0, 255) → uint8`` before the detector.
* ``'pytorch_fid'`` (mseitzer/pytorch-fid ``fid_score.py``): unbiased covariance (``np.cov``),
  and when ``sqrtm`` is not finite it retries with ``1e-6·I`` added to both covariances;
  an imaginary diagonal part above 1e-3 is an error.

Detector differences. NVlabs' detector is ``inception-2015-12-05.pt``, a TorchScript
translation of the TensorFlow graph that takes uint8 ``[0, 255]`` images, resizes them inside
the graph (TF's bilinear resize) and normalises with ``(x − 128)/128``. pytorch-fid's network
(``pt_inception-2015-12-05-6726825d.pth``) has the same weights but takes ``[0, 1]`` input,
resizes with ``F.interpolate(bilinear, align_corners=False)`` to 299 and normalises with
``2x − 1``. The two feature extractors therefore differ by the resize kernel (the TF resize
does not align corners the same way) and a half-level shift of the normalisation; for
256-px images the resulting FIDs typically differ in the first decimal (clean-fid reports
differences of a few percent), so numbers from one tool must not be compared with the other.
Here the Inception of :mod:`gancomp_jax.nets.inception` (pytorch-fid's layout and weights)
runs with either preprocessing (:mod:`gancomp_jax.metrics.detectors`): ``'pytorch_fid'`` is
exact; ``'nvlabs'`` reproduces the ``(x − 128)/128`` normalisation and uses bilinear
resizing with half-pixel centres, an approximation of the TF graph's resize.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

CONVENTIONS = ("nvlabs", "pytorch_fid")


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm(a)`` (the references pass ``disp=False``, deprecated in SciPy 1.17;
    the flag only changes what is reported, not the result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scipy.linalg.sqrtm(a)


def frechet_distance(mu1, sigma1, mu2, sigma2, convention: str = "nvlabs", eps: float = 1e-6) -> float:
    """FID between two Gaussians ``(mu [D], sigma [D, D])``, float64.

    ``convention='nvlabs'`` transcribes ``compute_fid`` (``real(m + tr(Σ1 + Σ2 − 2 sqrtm))``);
    ``'pytorch_fid'`` transcribes ``calculate_frechet_distance`` (ε retry, imaginary check).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"FID convention must be one of {CONVENTIONS}, got {convention!r}")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances must be [{mu1.shape[0]}, {mu1.shape[0]}], got {sigma1.shape} and {sigma2.shape}")
    if convention == "nvlabs":
        m = np.square(mu1 - mu2).sum()
        s = _sqrtm(np.dot(sigma1, sigma2))
        return float(np.real(m + np.trace(sigma1 + sigma2 - s * 2)))
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_stats(stats_gen, stats_real, convention: str = "nvlabs") -> float:
    """FID from two :class:`~gancomp_jax.metrics.stats_cache.FeatureStats` (``capture_mean_cov``).

    NVlabs uses the biased covariance, pytorch-fid the unbiased one (``ddof=1``).
    """
    ddof = 0 if convention == "nvlabs" else 1
    mu_g, sigma_g = stats_gen.get_mean_cov(ddof=ddof)
    mu_r, sigma_r = stats_real.get_mean_cov(ddof=ddof)
    return frechet_distance(mu_g, sigma_g, mu_r, sigma_r, convention=convention)
