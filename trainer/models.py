"""The algorithm's networks: CIFAR-style ResNets (20/32/44/56/110) and ImageNet ResNets
(18/34/50/101/152/200), built from torchvision's `BasicBlock` / `Bottleneck` / `ResNet`.

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
    "ImageClassifier",
    "build_model",
    "pretrained_weights_path",
]

Block = type[BasicBlock] | type[Bottleneck]

# depth -> (block, blocks per stage); the CIFAR ones have 3 stages of 16/32/64 filters.
IMAGENET_RESNETS: dict[int, tuple[Block, tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}
CIFAR_RESNETS: dict[int, tuple[Block, tuple[int, ...]]] = {
    depth: (BasicBlock, ((depth - 2) // 6,) * 3) for depth in (20, 32, 44, 56, 110)
}
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


class CifarResNet(nn.Module):
    """The ResNet paper's CIFAR network: 3x3 conv, three stages of 16/32/64 filters, pooling, FC."""

    def __init__(self, block: Block, layers: tuple[int, ...], channels: int, num_classes: int):
        super().__init__()
        self.inplanes = CIFAR_WIDTHS[0]
        self.conv1 = nn.Conv2d(channels, self.inplanes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, CIFAR_WIDTHS[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, CIFAR_WIDTHS[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, CIFAR_WIDTHS[2], layers[2], stride=2)
        self.avgpool = GlobalAvgPool()
        self.fc = nn.Linear(CIFAR_WIDTHS[2] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))  # type: ignore[no-any-return]


def _cifar(depth: int, channels: int, num_classes: int) -> nn.Module:
    block, layers = CIFAR_RESNETS[depth]
    return CifarResNet(block, layers, channels, num_classes)


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
