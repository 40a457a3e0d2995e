"""Inception Score (Salimans et al. 2016), as NVlabs ``inception_score.py`` (``is50k``).

NVlabs' detector is called with ``no_output_bias=True``: class probabilities are the softmax of
the 1008 logits *without* the final layer's bias. The score is computed on ``num_splits``
consecutive splits (``part = probs[i·N/S : (i+1)·N/S]``) as ``exp(mean_i KL(p(y|x_i) ‖ p(y)))``;
the result is the mean and standard deviation over splits.
"""

from __future__ import annotations

import numpy as np


def softmax_no_bias(pool_features, fc_weight) -> np.ndarray:
    """Class probabilities ``[N, K]`` from pool features ``[N, D]`` and ``fc_weight [K, D]``,
    ignoring the bias (NVlabs ``no_output_bias=True``); float64 softmax."""
    logits = np.asarray(pool_features, np.float64) @ np.asarray(fc_weight, np.float64).T
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def inception_score(probs, num_splits: int = 10) -> tuple[float, float]:
    """``(mean, std)`` of the split scores for class probabilities ``probs [N, K]``."""
    probs = np.asarray(probs)
    num_gen = probs.shape[0]
    if probs.ndim != 2 or num_gen < num_splits:
        raise ValueError(f"IS needs probabilities [N >= num_splits={num_splits}, K], got {probs.shape}")
    scores = []
    for i in range(num_splits):
        part = probs[i * num_gen // num_splits:(i + 1) * num_gen // num_splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        kl = np.mean(np.sum(kl, axis=1))
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
