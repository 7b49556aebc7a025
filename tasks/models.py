"""The image classifiers of the LC papers, defined here (no torchvision).

=============  =====================================================  ==========================
model          architecture                                           parameters (28×28 / 32×32)
=============  =====================================================  ==========================
lenet300       784-300-100-10, ReLU (input size follows the data)      266,610
lenet5         Caffe LeNet5: conv 20@5×5, pool, conv 50@5×5, pool,    431,080
               fc 500, fc 10 (ReLU)
resnet20/32/   CIFAR ResNets (He et al., CVPR 2016, §4.2): 3×3 conv   269,722 / 464,154 /
56/110         16, 3 stages of n basic blocks (16, 32, 64 channels),  853,018 / 1,727,962
               option A shortcuts (subsample + zero-pad), BN          (the paper's 0.27M/0.46M/
                                                                      0.85M/1.7M)
vgg16          VGG16 with batch norm for CIFAR: 13 3×3 convs (+BN),   14,991,946
               classifier 512-512-10 with BN and dropout
=============  =====================================================  ==========================
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lc import CompressionError

__all__ = ["LeNet300", "LeNet5", "CifarResNet", "VGG16", "MODELS", "make_model", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class LeNet300(nn.Module):
    """Fully connected 300-100 hidden units with ReLU; the input is flattened, its size follows the data."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class LeNet5(nn.Module):
    """Caffe's LeNet5 (as in the LC papers): conv 20@5×5, max-pool 2, conv 50@5×5, max-pool 2, fc 500, fc."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        c, h, w = input_shape
        side = lambda s: ((s - 4) // 2 - 4) // 2  # noqa: E731 - two (5×5 valid conv, 2×2 pool) stages
        if side(h) < 1 or side(w) < 1:
            raise CompressionError(f"LeNet5 needs inputs of at least 16×16 pixels, got {h}×{w}; use lenet300 on "
                                   "small images (e.g. the 8×8 digits)")
        self.conv1 = nn.Conv2d(c, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * side(h) * side(w), 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x):
        """Option A: identity, or subsample by the stride and zero-pad the new channels (no parameters)."""
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR (He et al., CVPR 2016, §4.2) with option A shortcuts."""

    def __init__(self, depth: int = 20, input_shape=(3, 32, 32), num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise CompressionError(f"CifarResNet depth={depth}: depth must be 6n+2 (20, 32, 44, 56, 110, …)")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(_BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """VGG16 with batch norm for 32×32 inputs: 13 3×3 conv+BN+ReLU layers in 5 pooled blocks, then
    dropout → fc 512 → BN → ReLU → dropout → fc (the usual CIFAR variant)."""

    def __init__(self, input_shape=(3, 32, 32), num_classes: int = 10):
        super().__init__()
        layers, cin = [], input_shape[0]
        for v in VGG16_LAYERS:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(True),
                                        nn.Dropout(0.5), nn.Linear(512, num_classes))

    def forward(self, x):
        return self.classifier(F.adaptive_max_pool2d(self.features(x), 1).flatten(1))


MODELS = {
    "lenet300": LeNet300,
    "lenet5": LeNet5,
    "resnet20": lambda **kw: CifarResNet(20, **kw),
    "resnet32": lambda **kw: CifarResNet(32, **kw),
    "resnet56": lambda **kw: CifarResNet(56, **kw),
    "resnet110": lambda **kw: CifarResNet(110, **kw),
    "vgg16": VGG16,
}


def make_model(name: str, input_shape, num_classes: int = 10, seed: int | None = None) -> nn.Module:
    """A freshly initialised model ``name`` (one of :data:`MODELS`) for inputs of ``input_shape`` (C, H, W)."""
    if name not in MODELS:
        raise CompressionError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if seed is not None:
        torch.manual_seed(seed)
    return MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes)
