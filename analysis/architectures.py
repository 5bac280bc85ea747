"""The architectures whose costs the sources argue about, written as plain ``nn.Module``s.

torchvision cannot be imported beside this repository's pinned CPU torch (its compiled operators fail to load),
so the networks are written here, following torchvision's layouts (``torchvision/models/{resnet,vgg,alexnet,
squeezenet,densenet}.py``, which follow the papers except where noted), and tested against torchvision's
published parameter counts and GFLOPS (``tests/test_arch_costs.py``). Blocks are the units the sources compare;
networks are for whole-model claims. Only layer shapes matter here: nothing is trained, and the modules are
built on the ``meta`` device when only parameters are counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# -- ResNet (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016) -------------------


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34), BN after each, identity or 1x1 projection shortcut."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(*conv_bn(c_in, width, 3, stride), nn.ReLU(), *conv_bn(width, c_out, 3))
        self.shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) (ResNet-50). ``stride_on="3x3"`` is torchvision's layout ("ResNet v1.5":
    the downsampling stride on the 3x3 conv); ``"1x1"`` is the paper's (on the first 1x1), which costs less."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, stride_on: str = "3x3") -> None:
        super().__init__()
        c_out = width * self.expansion
        s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.body = nn.Sequential(*conv_bn(c_in, width, 1, s1), nn.ReLU(), *conv_bn(width, width, 3, s3), nn.ReLU(),
                                  *conv_bn(width, c_out, 1))
        self.shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages (64, 128, 256, 512 wide), average pool, fc."""

    def __init__(self, block: type[nn.Module], layers: Sequence[int], classes: int = 1000, **block_kwargs) -> None:
        super().__init__()
        stages: list[nn.Module] = [*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        c_in = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            for j in range(n):
                stages.append(block(c_in, width, 2 if (j == 0 and i > 0) else 1, **block_kwargs))
                c_in = width * block.expansion
        self.features = nn.Sequential(*stages)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def resnet18() -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet34() -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3))


def resnet50(stride_on: str = "3x3") -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), stride_on=stride_on)


# -- VGG-16 (Simonyan & Zisserman, ICLR 2015, configuration D) and AlexNet (torchvision's one-GPU variant) ------

VGG16_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in VGG16_CONVS:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU()]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class AlexNet(nn.Module):
    """torchvision's AlexNet (the single-tower variant of Krizhevsky's "One weird trick" paper, 64-192-384-256-256
    filters), which is the reference SqueezeNet's comparison is read against here."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class AlexNetOriginal(nn.Module):
    """The two-tower AlexNet of Krizhevsky, Sutskever & Hinton (NeurIPS 2012), as Caffe's ``bvlc_alexnet``:
    96-256-384-384-256 filters, conv2, conv4 and conv5 in two groups, local response normalisation (no
    parameters), 227 x 227 input. The AlexNet the SqueezeNet paper compares against."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


# -- SqueezeNet (Iandola et al., 2016, "AlexNet-level accuracy with 50x fewer parameters and <0.5MB") ---------


class Fire(nn.Module):
    """Squeeze (1x1 to s) then expand (1x1 to e1 and 3x3 to e3, concatenated); ReLU after each conv."""

    def __init__(self, c_in: int, s1x1: int, e1x1: int, e3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, s1x1, 1)
        self.expand1x1 = nn.Conv2d(s1x1, e1x1, 1)
        self.expand3x3 = nn.Conv2d(s1x1, e3x3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, version: str = "1_0", classes: int = 1000) -> None:
        super().__init__()

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        if version == "1_0":
            layers = [nn.Conv2d(3, 96, 7, 2), nn.ReLU(), pool(), Fire(96, 16, 64, 64), Fire(128, 16, 64, 64),
                      Fire(128, 32, 128, 128), pool(), Fire(256, 32, 128, 128), Fire(256, 48, 192, 192),
                      Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), pool(), Fire(512, 64, 256, 256)]
        elif version == "1_1":
            layers = [nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
                      Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(), Fire(256, 48, 192, 192),
                      Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256)]
        else:
            raise ValueError(f"SqueezeNet version must be '1_0' or '1_1', got {version!r}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(), nn.Conv2d(512, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).flatten(1)


# -- DenseNet (Huang, Liu, van der Maaten, Weinberger, CVPR 2017) ---------------------------------------------


class PlainDenseLayer(nn.Module):
    """BN-ReLU-3x3 conv c -> k: a DenseNet layer without the bottleneck."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseLayerB(nn.Module):
    """DenseNet-B: BN-ReLU-1x1 conv c -> bn_size*k, BN-ReLU-3x3 conv -> k."""

    def __init__(self, c_in: int, growth: int, bn_size: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, bn_size * growth, 1, bias=False),
                                  nn.BatchNorm2d(bn_size * growth), nn.ReLU(),
                                  nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv c -> floor(theta c), 2x2 average pool (DenseNet-C compression theta; 1 = none)."""

    def __init__(self, c_in: int, theta: float = 0.5) -> None:
        super().__init__()
        self.c_out = int(c_in * theta)
        self.body = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, self.c_out, 1, bias=False),
                                  nn.AvgPool2d(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DenseNet(nn.Module):
    """DenseNet-BC: 7x7/2 stem (64), max-pool, dense blocks of DenseNet-B layers with transitions (theta 0.5)."""

    def __init__(self, blocks: Sequence[int] = (6, 12, 24, 16), growth: int = 32, stem: int = 64,
                 classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(),
                                   nn.MaxPool2d(3, 2, 1)]
        c = stem
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayerB(c, growth))
                c += growth
            if i < len(blocks) - 1:
                layers.append(Transition(c))
                c = layers[-1].c_out
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def densenet121() -> DenseNet:
    return DenseNet((6, 12, 24, 16), 32, 64)


# -- Inception module (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015; the lecture's example) -------


class Inception(nn.Module):
    """Parallel 1x1, 3x3, 5x5 convs and a 3x3 max-pool ("same" padding), outputs concatenated. ``reduce`` > 0 puts
    1x1 convs to ``reduce`` channels before the 3x3 and the 5x5 and after the pool."""

    def __init__(self, c_in: int = 256, c1: int = 128, c3: int = 192, c5: int = 96, reduce: int = 0) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(c_in, c1, 1)
        if reduce:
            self.b3 = nn.Sequential(nn.Conv2d(c_in, reduce, 1), nn.Conv2d(reduce, c3, 3, padding=1))
            self.b5 = nn.Sequential(nn.Conv2d(c_in, reduce, 1), nn.Conv2d(reduce, c5, 5, padding=2))
            self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c_in, reduce, 1))
        else:
            self.b3 = nn.Conv2d(c_in, c3, 3, padding=1)
            self.b5 = nn.Conv2d(c_in, c5, 5, padding=2)
            self.bp = nn.MaxPool2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)
