"""Every depth of both ResNet families, any channel count, pretrained weights from a local file."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, resnet18

from trainer.errors import HyperparameterError
from trainer.hyperparameters import parse_hyperparameters
from trainer.models import (
    CIFAR_RESNETS,
    PRETRAINED_ENV,
    PRETRAINED_FILES,
    PreActBlock,
    build_model,
    pretrained_weights_path,
)

torch.set_num_threads(2)


def hp_for(depth: int, shape: str, **extra: object):
    return parse_hyperparameters(
        {
            "num_classes": 7,
            "num_training_samples": 100,
            "num_layers": depth,
            "image_shape": shape,
            **extra,
        }
    )


def weighted_layers(model: nn.Module) -> int:
    """Convolutions on the main path plus the classifier: what a ResNet's depth counts."""
    return sum(
        1
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
        and "downsample" not in name
        and not name.endswith("shortcut")
    )


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_is_mxnets_preactivation_network_and_runs_on_32x32(depth: int) -> None:
    model = build_model(hp_for(depth, "3,32,32"))
    net = model.net
    stages = list(net.stages)
    assert [len(s) for s in stages] == [(depth - 2) // 6] * 3
    assert all(isinstance(b, PreActBlock) for s in stages for b in s)
    assert [s[0].conv1.out_channels for s in stages] == [16, 32, 64]
    # as in MXNet's symbols/resnet.py: every stage's first unit projects its shortcut (1x1 conv
    # of the first activation), the others add their input unchanged
    assert [[b.shortcut is not None for b in s] for s in stages] == [
        [True] + [False] * ((depth - 2) // 6 - 1)
    ] * 3
    assert [s[0].shortcut.stride for s in stages] == [(1, 1), (2, 2), (2, 2)]
    # the input BatchNorm's scale is fixed at 1 (fix_gamma), its shift learned; MXNet's eps
    assert not net.bn_data.weight.requires_grad and net.bn_data.bias.requires_grad
    assert all(m.eps == 2e-5 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert weighted_layers(model) == depth
    out = model.eval()(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert out.shape == (2, 7)


def test_cifar_resnet_is_initialised_like_mxnets_xavier_gaussian_in_magnitude_2() -> None:
    torch.manual_seed(0)
    net = build_model(hp_for(110, "3,32,32")).net
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    weights = torch.cat([m.weight.flatten() for m in convs[1:] if m.in_channels == 64])
    expected = (2 / (64 * 9)) ** 0.5  # sqrt(magnitude / fan_in)
    assert abs(weights.std().item() / expected - 1) < 0.02
    assert abs(net.fc.weight.std().item() / (2 / 64) ** 0.5 - 1) < 0.25
    assert not net.fc.bias.any()


@pytest.mark.parametrize(
    ("depth", "block", "layers"),
    [
        (18, BasicBlock, [2, 2, 2, 2]),
        (34, BasicBlock, [3, 4, 6, 3]),
        (50, Bottleneck, [3, 4, 6, 3]),
        (101, Bottleneck, [3, 4, 23, 3]),
        (152, Bottleneck, [3, 8, 36, 3]),
        (200, Bottleneck, [3, 24, 36, 3]),
    ],
)
def test_imagenet_resnet_has_the_papers_blocks(depth: int, block: type, layers: list) -> None:
    net = build_model(hp_for(depth, "3,224,224")).net
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    assert [len(s) for s in stages] == layers
    assert all(isinstance(b, block) for s in stages for b in s)
    assert net.fc.out_features == 7
    assert net.fc.in_features == 512 * block.expansion


def test_imagenet_resnet_runs_on_a_tiny_input() -> None:
    model = build_model(hp_for(18, "3,224,224")).eval()
    assert model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 7)


@pytest.mark.parametrize(("depth", "channels"), [(20, 1), (20, 4), (18, 1), (50, 4)])
def test_any_channel_count_from_image_shape(depth: int, channels: int) -> None:
    model = build_model(hp_for(depth, f"{channels},32,32")).eval()
    first = model.net.conv0 if depth in CIFAR_RESNETS else model.net.conv1
    assert first.in_channels == channels
    x = torch.randint(0, 256, (2, channels, 32, 32), dtype=torch.uint8)
    assert model(x).shape == (2, 7)


def test_model_normalises_raw_pixels_inside_and_takes_uint8_or_float() -> None:
    model = build_model(hp_for(20, "3,32,32")).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(model(x), model(x.float()))
    normalised = model.normalize(torch.full((1, 3, 1, 1), 255.0))
    assert normalised.min() > 1.5 and normalised.max() < 3.0  # (1 - mean) / std per channel


def test_seed_gives_the_same_initial_weights() -> None:
    hp = hp_for(20, "3,32,32")
    torch.manual_seed(3)
    a = build_model(hp).state_dict()
    torch.manual_seed(3)
    b = build_model(hp).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pretrained_weights_load_from_a_local_file_with_only_fc_reinitialised(
    tmp_path, monkeypatch
) -> None:
    torch.manual_seed(0)
    reference = resnet18().state_dict()
    torch.save(reference, tmp_path / PRETRAINED_FILES[18])
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path))
    assert pretrained_weights_path(18) == tmp_path / "resnet18-f37072fd.pth"
    net = build_model(hp_for(18, "3,224,224", use_pretrained_model=1)).net
    loaded = net.state_dict()
    body = [k for k in reference if not k.startswith("fc.")]
    assert body and all(torch.equal(loaded[k], reference[k]) for k in body)
    assert loaded["fc.weight"].shape == (7, 512)


def test_pretrained_weights_are_found_in_the_torch_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(PRETRAINED_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert pretrained_weights_path(18) == expected
    expected.parent.mkdir(parents=True)
    torch.save(resnet18().state_dict(), expected)
    build_model(hp_for(18, "3,224,224", use_pretrained_model=1))


def test_missing_pretrained_file_says_where_to_put_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path))
    with pytest.raises(HyperparameterError) as info:
        build_model(hp_for(34, "3,224,224", use_pretrained_model=1))
    message = str(info.value)
    assert str(tmp_path / "resnet34-b627a593.pth") in message
    assert PRETRAINED_ENV in message and "nothing is downloaded" in message


def test_pretrained_file_of_another_depth_is_rejected(tmp_path, monkeypatch) -> None:
    torch.save(resnet18().state_dict(), tmp_path / PRETRAINED_FILES[34])
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path))
    with pytest.raises(HyperparameterError, match="do not fit ResNet-34"):
        build_model(hp_for(34, "3,224,224", use_pretrained_model=1))


def test_pretrained_file_with_other_shapes_is_rejected(tmp_path, monkeypatch) -> None:
    from torchvision.models.resnet import resnet50

    torch.save(resnet50().state_dict(), tmp_path / PRETRAINED_FILES[18])
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path))
    with pytest.raises(HyperparameterError, match="do not fit ResNet-18"):
        build_model(hp_for(18, "3,224,224", use_pretrained_model=1))
