"""pytorch-fid as a reference in tests: installs the torchvision stand-in (tests/fake_torchvision.py)
plus the one transform pytorch-fid's folder reader uses, then imports pytorch-fid."""

from __future__ import annotations

import sys
import types

import numpy as np


def install():
    """Returns ``(pytorch_fid.inception, pytorch_fid.fid_score)``; raises ImportError without them."""
    import torch

    import fake_torchvision

    fake_torchvision.install()

    class ToTensor:
        """torchvision.transforms.ToTensor for PIL RGB images: ``[3, H, W]`` float in [0, 1]."""

        def __call__(self, img):
            return torch.from_numpy(np.array(img, np.uint8)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)

    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor = ToTensor
    sys.modules["torchvision"].transforms = transforms
    sys.modules["torchvision.transforms"] = transforms
    import pytorch_fid.fid_score as fid_score
    import pytorch_fid.inception as inception
    return inception, fid_score
