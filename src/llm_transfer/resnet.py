"""ResNet-20 for CIFAR-10 written in view (He et al. 2016, §4.2), the shared checkpoint loaded into it, digits for it.

The network: a 3×3 conv to 16 channels, three stages of 3 basic blocks at 16 / 32 / 64 channels (the first block
of stages 2 and 3 halves the image with stride 2), global average pool, a linear layer 64 -> 10. A basic block is
relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)). "Option A" shortcuts are parameter-free: where a block halves the
image and doubles the channels, the shortcut takes every second pixel and pads the new channels with zeros.
Names and layout follow Yerlan Idelbayev's pytorch_resnet_cifar10 (BSD-2-Clause), whose trained weights are in
`../shared/models/resnet20-cifar10/`; its trainer normalised images with ImageNet's channel mean and std
(`TRAIN_MEAN`, `TRAIN_STD`), not CIFAR-10's, and augmented with random flips and 4-pixel black-padded crops.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .models import ModelError, sha256_file
from .settings import _search_roots

RESNET20_FILE = Path("shared") / "models" / "resnet20-cifar10" / "resnet20-12fca82f.th"
TRAIN_MEAN = (0.485, 0.456, 0.406)  # what the checkpoint's trainer subtracted (ImageNet's statistics)
TRAIN_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10's own channel means (training images, pixels in [0, 1])
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def option_a_shortcut(x: torch.Tensor, planes: int) -> torch.Tensor:
    """Identity shortcut to a block that halves the image: every second pixel, channels zero-padded to `planes`."""
    extra = planes - x.shape[1]
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN layers and a shortcut: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.planes, self.downsample = planes, stride != 1 or in_planes != planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (option_a_shortcut(x, self.planes) if self.downsample else x))


def _stage(in_planes: int, planes: int, stride: int, n: int) -> nn.Sequential:
    """n basic blocks; the first one changes the width and (stride 2) halves the image."""
    return nn.Sequential(BasicBlock(in_planes, planes, stride), *(BasicBlock(planes, planes) for _ in range(n - 1)))


class ResNet20(nn.Module):
    """ResNet-20: conv 16, stages of 3 blocks at 16 / 32 / 64 channels, average pool, linear 64 -> num_classes."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1, self.layer2, self.layer3 = _stage(16, 16, 1, 3), _stage(16, 32, 2, 3), _stage(32, 64, 2, 3)
        self.linear = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 64 pooled features (B, 64) the linear layer reads: what a linear probe is trained on."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return out.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) for images (B, 3, H, W) normalised with TRAIN_MEAN / TRAIN_STD."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet20 takes images of shape (batch, 3, height, width); got {tuple(x.shape)}.")
        return self.linear(self.features(x))


def find_resnet20() -> Path | None:
    """The shared checkpoint at ../shared/models/resnet20-cifar10/ next to the checkout, if there is one."""
    for r in _search_roots():
        if (r / RESNET20_FILE).is_file():
            return r / RESNET20_FILE
    return None


def _expected_sha256(path: Path) -> str | None:
    """The file's SHA-256 as listed in a SHA256SUMS next to it (None when there is no such list or line)."""
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            return parts[0].lower()
    return None


def load_resnet20(path: str | os.PathLike | None = None) -> ResNet20:
    """The CIFAR-10 ResNet-20 from a checkpoint (default: the shared one), hash-checked, loaded strictly, eval mode."""
    found = Path(path).expanduser() if path is not None else find_resnet20()
    if found is None or not found.is_file():
        raise ModelError(f"{found or Path('..') / RESNET20_FILE}: ResNet-20 checkpoint not found; put the shared "
                         "folder next to the checkout or pass the file's path.")
    expected = _expected_sha256(found)
    if expected is not None and (got := sha256_file(found)) != expected:
        raise ModelError(f"{found}: SHA-256 is {got}, expected {expected} (from SHA256SUMS); the file was altered "
                         "or truncated, refusing to load it.")
    try:
        state = torch.load(found, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as e:  # a pickle error, a file that is not a checkpoint, a dict without state_dict
        detail = " ".join(str(e).split())[:200]  # one line, however torch formats it
        raise ModelError(f"{found}: not a pytorch_resnet_cifar10 checkpoint ({type(e).__name__}: {detail}).") from None
    consume_prefix_in_state_dict_if_present(state, "module.")  # saved from nn.DataParallel
    model = ResNet20()
    model.load_state_dict(state, strict=True)  # BatchNorm fills num_batches_tracked, absent from legacy files
    return model.eval()


def digits_for_resnet(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 bundled 8×8 digits as the network's input: (N, 3, size, size) normalised images, labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # pixels 0..16 -> [0, 1], ink bright
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    mean, std = torch.tensor(TRAIN_MEAN).view(1, 3, 1, 1), torch.tensor(TRAIN_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(), torch.as_tensor(digits.target, dtype=torch.long)
