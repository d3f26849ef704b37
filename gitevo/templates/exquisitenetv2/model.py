"""ExquisiteNetV2, a 0.518M-parameter image classifier: the gene file that gitevo evolves.

Each top-level function or class below is one gene block; the mutation and crossover
operators rewrite one block at a time. The training harness (train.py, harness/) builds
`ExquisiteNetV2(class_num, img_channels)`, asks `get_optimizer` for its optimizer, and
measures accuracy and parameter count with its own code, so nothing written here can
report its own fitness. Every block can be built with its default arguments.
"""

import torch
import torch.nn.functional as F
from torch import nn


def get_optimizer(
    model: nn.Module, lr: float = 0.1, weight_decay: float = 1e-4, nesterov: bool = True
) -> torch.optim.Optimizer:
    """SGD with momentum 0.9, decaying only conv and linear weights.

    Norm-layer scales and every bias are left undecayed: shrinking them towards zero
    does not regularise the function the network computes, it only fights the norm.
    """
    norm_types = (nn.BatchNorm2d, nn.LayerNorm)
    decayed, undecayed = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "weight" and not isinstance(module, norm_types):
                decayed.append(param)
            else:
                undecayed.append(param)
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": undecayed, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=nesterov)


class SE(nn.Module):
    """Squeeze-and-excitation: a two-layer bottleneck MLP gates each channel."""

    def __init__(self, cin: int = 48, ratio: int = 3):
        super().__init__()
        hidden = int(cin / ratio)
        self.squeeze = nn.Linear(cin, hidden, bias=False)
        self.excite = nn.Linear(hidden, cin, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))
        return x * gate[:, :, None, None]


class SE_LN(nn.Module):
    """Channel gate without a bottleneck: pooled features, LayerNorm, sigmoid."""

    def __init__(self, cin: int = 48):
        super().__init__()
        self.norm = nn.LayerNorm(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.norm(x.mean(dim=(2, 3))))
        return x * gate[:, :, None, None]


class DFSEBV2(nn.Module):
    """Residual feature block: two pointwise+depthwise stages, both added to the input."""

    def __init__(self, cin: int = 48, dw_s: int = 3, is_LN: bool = True):
        super().__init__()
        pad = (dw_s - 1) // 2
        self.pw1 = nn.Conv2d(cin, cin, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.dw1 = nn.Conv2d(cin, cin, dw_s, padding=pad, groups=cin)
        self.gate = SE_LN(cin) if is_LN else SE(cin, 3)
        self.pw2 = nn.Conv2d(cin, cin, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cin)
        self.dw2 = nn.Conv2d(cin, cin, dw_s, padding=pad, groups=cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gate(self.dw1(F.silu(self.bn1(self.pw1(x))))) + x
        # the second stage adds the block's input, not the first stage's sum
        return self.dw2(F.hardswish(self.bn2(self.pw2(h)))) + x


class FCT(nn.Module):
    """Stem that halves the resolution three ways (max, min, learned) and mixes them."""

    def __init__(self, cin: int = 3, cout: int = 12):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 4, stride=2, padding=1, groups=cin, bias=False)
        self.pw = nn.Conv2d(3 * cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = F.max_pool2d(x, 2, ceil_mode=True)
        low = -F.max_pool2d(-x, 2, ceil_mode=True)
        return self.bn(self.pw(torch.cat((high, low, self.dw(x)), dim=1)))


class EVE(nn.Module):
    """Downsampling that keeps both the strongest and the weakest response per window."""

    def __init__(self, cin: int = 12, cout: int = 48):
        super().__init__()
        self.pw = nn.Conv2d(2 * cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = F.max_pool2d(x, 2, ceil_mode=True)
        low = -F.max_pool2d(-x, 2, ceil_mode=True)
        return self.bn(self.pw(torch.cat((high, low), dim=1)))


class ME(nn.Module):
    """Max-pool downsampling followed by a pointwise channel expansion."""

    def __init__(self, cin: int = 48, cout: int = 96):
        super().__init__()
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pw(F.max_pool2d(x, 2, ceil_mode=True)))


class DW(nn.Module):
    """Depthwise convolution with bias, then hard-swish."""

    def __init__(self, cin: int = 384, dw_s: int = 3):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, dw_s, padding=(dw_s - 1) // 2, groups=cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(self.dw(x))


class ExquisiteNetV2(nn.Module):
    """The seed network; 518,230 parameters for 10 classes of RGB images."""

    def __init__(self, class_num: int = 10, img_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            FCT(img_channels, 12),
            DFSEBV2(12, 3, True),
            EVE(12, 48),
            DFSEBV2(48, 3, True),
            ME(48, 96),
            DFSEBV2(96, 3, True),
            ME(96, 192),
            DFSEBV2(192, 3, True),
            ME(192, 384),
            DFSEBV2(384, 3, True),
            DW(384, 3),
        )
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(384, class_num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(pooled))
