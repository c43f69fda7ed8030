"""The algorithm's networks: CIFAR-style ResNets (20/32/44/56/110), pre-activation as in the
seed's MXNet `symbols/resnet.py`, and ImageNet ResNets (18/34/50/101/152/200), built from
torchvision's `BasicBlock` / `Bottleneck` / `ResNet` so that torchvision's ImageNet weights load
into them.

Every model takes NCHW images on the 0..255 scale (uint8 or float) and normalises them in its
first module, so the training loop, `Predictor` and exported models all feed raw pixels.

`use_pretrained_model=1` loads ImageNet weights for the depth from a local file, never from the
network: `$TRAINER_PRETRAINED_DIR/<file>` if that variable is set, else the torch hub cache
`$TORCH_HOME/hub/checkpoints/<file>` (`<file>` is torchvision's name, e.g. `resnet50-0676ba61.pth`).
Only the final fully connected layer is re-initialised.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from trainer.errors import HyperparameterError
from trainer.hyperparameters import Hyperparameters

__all__ = [
    "CIFAR_RESNETS",
    "IMAGENET_RESNETS",
    "PRETRAINED_ENV",
    "PRETRAINED_FILES",
    "CifarResNet",
    "ImageClassifier",
    "PreActBlock",
    "build_model",
    "pretrained_weights_path",
]

Block = type[BasicBlock] | type[Bottleneck]

# depth -> (block, blocks per stage)
IMAGENET_RESNETS: dict[int, tuple[Block, tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}
# depth -> pre-activation units per stage (3 stages)
CIFAR_RESNETS: dict[int, int] = {depth: (depth - 2) // 6 for depth in (20, 32, 44, 56, 110)}
CIFAR_WIDTHS = (16, 32, 64)

# torchvision's file names for its ImageNet weights (as saved in the torch hub cache); ResNet-200
# has none in torchvision, so it takes a file of that name that the user provides.
PRETRAINED_FILES: dict[int, str] = {
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth",
    101: "resnet101-63fe2227.pth",
    152: "resnet152-394f9c45.pth",
    200: "resnet200.pth",
}
PRETRAINED_ENV = "TRAINER_PRETRAINED_DIR"

# ImageNet statistics on the 0..255 scale; other channel counts use their average.
_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class Normalize(nn.Module):
    """(x - mean) / std per channel for 0..255 input of any dtype; output float32."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mean = _MEAN if channels == 3 else (sum(_MEAN) / 3,) * channels
        std = _STD if channels == 3 else (sum(_STD) / 3,) * channels
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class GlobalAvgPool(nn.Module):
    """Average over H and W (keeping 1x1): unlike AdaptiveAvgPool2d, its CUDA backward is
    deterministic, so a seed gives the same model on a GPU too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class ImageClassifier(nn.Module):
    """`normalize` followed by a ResNet `net`; keeps the input's memory format (channels_last)."""

    def __init__(self, channels: int, net: nn.Module) -> None:
        super().__init__()
        self.normalize = Normalize(channels)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))  # type: ignore[no-any-return]


# MXNet's BatchNorm settings in the seed's symbols/resnet.py (its momentum 0.9 keeps 0.9 of the
# running value, which is torch's momentum 0.1).
_BN_EPS = 2e-5


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.1)


class PreActBlock(nn.Module):
    """MXNet's `residual_unit` without bottleneck ("Identity Mappings in Deep Residual Networks"):
    BN-ReLU-conv3x3-BN-ReLU-conv3x3, added to the input, or to a 1x1 convolution of the first
    activation when the unit changes width or stride (as the first unit of every stage does)."""

    def __init__(self, inplanes: int, planes: int, stride: int, project: bool) -> None:
        super().__init__()
        self.bn1 = _bn(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False) if project else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(act))))
        return out + (x if self.shortcut is None else self.shortcut(act))  # type: ignore[no-any-return]


class CifarResNet(nn.Module):
    """The seed's CIFAR network (MXNet `symbols/resnet.py` for images up to 32 pixels): a BatchNorm
    on the input with its scale fixed at 1, a 3x3 convolution of 16 filters, three stages of
    pre-activation units of 16/32/64 filters, BN-ReLU, global average pooling, FC. Initialised as
    MXNet's `fit.py` does: `Xavier(gaussian, in, magnitude=2)`, i.e. He normal over fan-in, for the
    convolutions and the FC layer; zero biases."""

    def __init__(self, blocks: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn_data = _bn(channels)
        self.bn_data.weight.requires_grad_(False)  # MXNet's fix_gamma=True
        self.conv0 = nn.Conv2d(channels, CIFAR_WIDTHS[0], 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        inplanes = CIFAR_WIDTHS[0]
        for i, planes in enumerate(CIFAR_WIDTHS):
            stride = 1 if i == 0 else 2
            units = [PreActBlock(inplanes, planes, stride, project=True)]
            units += [PreActBlock(planes, planes, 1, project=False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*units))
            inplanes = planes
        self.stages = nn.Sequential(*stages)
        self.bn1 = _bn(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = GlobalAvgPool()
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.conv0(self.bn_data(x)))
        x = self.relu(self.bn1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))  # type: ignore[no-any-return]


def _cifar(depth: int, channels: int, num_classes: int) -> nn.Module:
    return CifarResNet(CIFAR_RESNETS[depth], channels, num_classes)


def _imagenet(depth: int, channels: int, num_classes: int) -> nn.Module:
    block, layers = IMAGENET_RESNETS[depth]
    net = ResNet(block, list(layers), num_classes=num_classes)
    net.avgpool = GlobalAvgPool()
    if channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


_BUILDERS: dict[int, Callable[[int, int, int], nn.Module]] = {
    **{depth: _cifar for depth in CIFAR_RESNETS},
    **{depth: _imagenet for depth in IMAGENET_RESNETS},
}


def pretrained_weights_path(depth: int) -> Path:
    """Where the ImageNet weights for `depth` are read from (`$TRAINER_PRETRAINED_DIR` or the
    torch hub cache's `checkpoints/`)."""
    folder = os.environ.get(PRETRAINED_ENV)
    base = Path(folder) if folder else Path(torch.hub.get_dir()) / "checkpoints"
    return base / PRETRAINED_FILES[depth]


def _load_pretrained(net: nn.Module, depth: int) -> None:
    path = pretrained_weights_path(depth)
    if not path.is_file():
        raise HyperparameterError(
            f"use_pretrained_model=1 needs ImageNet weights for ResNet-{depth} in {path}, which "
            "does not exist (nothing is downloaded at run time); put torchvision's "
            f"'{PRETRAINED_FILES[depth]}' there, or set {PRETRAINED_ENV} to the folder holding it"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HyperparameterError(f"cannot read pretrained weights {path}: {exc}") from None
    if not isinstance(state, dict):
        raise HyperparameterError(f"pretrained weights {path} do not hold a state_dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        raise HyperparameterError(
            f"pretrained weights {path} do not fit ResNet-{depth}: {str(exc).splitlines()[-1]}"
        ) from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise HyperparameterError(
            f"pretrained weights {path} do not fit ResNet-{depth}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def build_model(hp: Hyperparameters) -> ImageClassifier:
    """The network for `hp.num_layers`, `hp.image_shape` channels and `hp.num_classes` outputs,
    with ImageNet weights (all but the final FC) when `hp.use_pretrained_model` is set."""
    net = _BUILDERS[hp.num_layers](hp.num_layers, hp.channels, hp.num_classes)
    if hp.use_pretrained_model:
        _load_pretrained(net, hp.num_layers)
    return ImageClassifier(hp.channels, net)
