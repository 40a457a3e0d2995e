"""The input-gradient parity criterion (tests/tolerances.py) on synthetic cases from its analysis."""

import numpy as np

from tolerances import gradient_errors, MEDIAN_REL, REL_L2


def _ref():
    return np.random.default_rng(0).standard_normal((3, 48, 40, 3))


def test_rounding_and_a_branch_flip_pass_but_a_max_abs_bound_does_not():
    ref = _ref()
    rng = np.random.default_rng(1)
    got = ref * (1 + 4e-6 * rng.standard_normal(ref.shape))       # float32-level rounding
    got[0, 10:22, 8:28] += 1.5e-2 * np.abs(ref).max() * rng.uniform(-1, 1, (12, 20, 3)) * 0.3
    got[0, 15, 14, 1] = ref[0, 15, 14, 1] + 1.5e-2 * np.abs(ref).max()  # a flipped max-pool choice
    med, l2 = gradient_errors(got, ref)
    assert med <= MEDIAN_REL and l2 <= REL_L2
    assert np.max(np.abs(got - ref)) > 1e-4 * np.max(np.abs(ref))  # the old criterion failed here


def test_real_errors_fail():
    ref = _ref()
    for wrong in (ref * 1.002,                      # a scale slightly off
                  np.roll(ref, 1, axis=2),          # off by one pixel (padding)
                  ref[..., ::-1],                   # RGB vs BGR
                  ref + 0.05 * np.random.default_rng(2).standard_normal(ref.shape)):  # noise
        med, l2 = gradient_errors(wrong, ref)
        assert med > MEDIAN_REL or l2 > REL_L2
