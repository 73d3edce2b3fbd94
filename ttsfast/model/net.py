"""The two-arm spatiotemporal CNN: a spatial arm on grey frames, a temporal arm on dense flow.

Both arms are small factorised 3D networks: a (2+1)D stem (a 1x3x3 spatial convolution
followed by a 3x1x1 temporal one) and depthwise-separable 3D blocks (a 3x3x3 depthwise
convolution followed by a 1x1x1 pointwise one), each convolution followed by batch norm
and ReLU. After each arm's last convolution comes global average pooling; the pooled
features of both arms are concatenated and a single linear layer gives the logits for
``CLASSES = ("STEMI", "TTS")``. Because the head is linear in the pooled features, the
Grad-CAM of either arm equals its class activation map (CAM) ``sum_k w_ck A_k`` up to a
positive factor, which is what the ONNX fast path computes (see :mod:`ttsfast.model.gradcam`).

Shapes (default configuration)
------------------------------
spatial input   [B, 1, 32, 128, 176]   grey frames of one beat, normalised by ``make_inputs``
temporal input  [B, 2, 32, 128, 176]   flow (dx, dy) of the same beat, model-grid px/frame, scaled
stem            [B, 8, 16, 64, 88]     1x3x3 conv stride (1,2,2), then 3x1x1 conv stride (2,1,1)
blocks          [B, 16, 16, 32, 44] -> [B, 32, 8, 16, 22] -> [B, 64, 8, 16, 22]
last conv       [B, C, 8, 16, 22]      per arm (C = ``channels[-1]`` = 64)
logits          [B, 2]                 (STEMI, TTS)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

#: Output classes, in logit order.
CLASSES: tuple[str, str] = ("STEMI", "TTS")


@dataclass(frozen=True)
class NetConfig:
    """Architecture hyper-parameters of :class:`TwoArmNet`.

    Attributes
    ----------
    t, h, w : int
        Model input grid: frames per beat and rows x cols (half the 256x352 analysis grid).
    channels : tuple of int
        Channels of the stem and of each separable block, per arm.
    strides : tuple of (int, int, int)
        (t, h, w) stride of the stem and of each separable block.
    dropout : float
        Dropout on the pooled features (training only).
    """

    t: int = 32
    h: int = 128
    w: int = 176
    channels: tuple[int, ...] = (8, 16, 32, 64)
    strides: tuple[tuple[int, int, int], ...] = ((2, 2, 2), (1, 2, 2), (2, 2, 2), (1, 1, 1))
    dropout: float = 0.3
    n_classes: int = field(default=len(CLASSES))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["strides"] = [list(s) for s in self.strides]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        d = dict(d)
        d["channels"] = tuple(int(c) for c in d.get("channels", cls.channels))
        d["strides"] = tuple(tuple(int(v) for v in s) for s in d.get("strides", cls.strides))
        keep = {k: d[k] for k in ("t", "h", "w", "channels", "strides", "dropout", "n_classes") if k in d}
        return cls(**keep)

    def act_shape(self) -> tuple[int, int, int, int]:
        """Shape ``(C, t, h, w)`` of each arm's last-conv activations for this config."""
        t, h, w = self.t, self.h, self.w
        for s in self.strides:
            # every conv here has kernel 3 (or 1 in that axis with stride 1) and padding 1
            t, h, w = (t - 1) // s[0] + 1, (h - 1) // s[1] + 1, (w - 1) // s[2] + 1
        return (self.channels[-1], t, h, w)


def _cbr(cin: int, cout: int, k: tuple[int, int, int], s: tuple[int, int, int], groups: int = 1) -> list[nn.Module]:
    pad = tuple(kk // 2 for kk in k)
    return [nn.Conv3d(cin, cout, k, stride=s, padding=pad, groups=groups, bias=False),
            nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


class Arm(nn.Module):
    """One arm: (2+1)D stem, then depthwise-separable 3D blocks.

    ``forward(x [B, cin, T, H, W]) -> activations [B, C, t, h, w]`` (after the last
    convolution's BN+ReLU; this is the Grad-CAM target layer).
    """

    def __init__(self, cin: int, channels: tuple[int, ...], strides: tuple[tuple[int, int, int], ...]):
        super().__init__()
        if len(channels) != len(strides) or len(channels) < 2:
            raise ValueError("channels and strides must have the same length >= 2")
        st = strides[0]
        layers: list[nn.Module] = []
        # (2+1)D stem: spatial 1x3x3 (spatial stride), then temporal 3x1x1 (temporal stride)
        layers += _cbr(cin, channels[0], (1, 3, 3), (1, st[1], st[2]))
        layers += _cbr(channels[0], channels[0], (3, 1, 1), (st[0], 1, 1))
        c = channels[0]
        for cout, s in zip(channels[1:], strides[1:]):
            layers += _cbr(c, c, (3, 3, 3), tuple(s), groups=c)  # depthwise
            layers += _cbr(c, cout, (1, 1, 1), (1, 1, 1))  # pointwise
            c = cout
        self.features = nn.Sequential(*layers)

    @property
    def last_conv(self) -> nn.Module:
        """The module whose output is the arm's last-conv activation (final ReLU)."""
        return self.features[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class TwoArmNet(nn.Module):
    """Two-arm spatiotemporal CNN (see module docstring).

    ``forward(spatial [B,1,T,H,W], temporal [B,2,T,H,W]) -> logits [B, 2]``.
    :meth:`forward_all` also returns both arms' last-conv activations.
    """

    def __init__(self, config: NetConfig | None = None):
        super().__init__()
        self.config = config or NetConfig()
        cfg = self.config
        self.spatial = Arm(1, cfg.channels, cfg.strides)
        self.temporal = Arm(2, cfg.channels, cfg.strides)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.channels[-1], cfg.n_classes)

    def forward_all(self, spatial: torch.Tensor, temporal: torch.Tensor):
        """Return ``(logits [B,2], act_spatial [B,C,t,h,w], act_temporal [B,C,t,h,w])``."""
        a_s = self.spatial(spatial)
        a_t = self.temporal(temporal)
        return self.head(self.dropout(self.pool(a_s, a_t))), a_s, a_t

    @staticmethod
    def pool(a_s: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        """Both arms' activations ``[B,C,t,h,w]`` -> global-average-pooled features ``[B, 2C]``
        (spatial arm first), the input of the linear head."""
        return torch.cat([a_s.mean(dim=(2, 3, 4)), a_t.mean(dim=(2, 3, 4))], dim=1)

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        return self.forward_all(spatial, temporal)[0]

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear-head weights split per arm: ``(w_spatial [2, C], w_temporal [2, C])``."""
        c = self.config.channels[-1]
        w = self.head.weight
        return w[:, :c], w[:, c:]


class ExportWrapper(nn.Module):
    """What goes into the ONNX file: logits, probabilities, both arms' last-conv activations
    and their raw class activation maps ``cam[b, c] = sum_k w_ck A_k`` (no bias, no ReLU)."""

    def __init__(self, net: TwoArmNet):
        super().__init__()
        self.net = net

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor):
        logits, a_s, a_t = self.net.forward_all(spatial, temporal)
        w_s, w_t = self.net.head_weights()
        cam_s = torch.einsum("kc,bcthw->bkthw", w_s, a_s)
        cam_t = torch.einsum("kc,bcthw->bkthw", w_t, a_t)
        return logits, torch.softmax(logits, dim=1), a_s, a_t, cam_s, cam_t


#: ONNX input / output names, in order.
ONNX_INPUTS = ("spatial", "temporal")
ONNX_OUTPUTS = ("logits", "probs", "act_spatial", "act_temporal", "cam_spatial", "cam_temporal")


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def count_flops(model: TwoArmNet, batch: int = 1) -> int:
    """Forward FLOPs of one call at the configured input size (``torch.utils.flop_counter``;
    one multiply-add counts as 2 FLOPs; convolutions and the linear head)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    s = torch.zeros(batch, 1, cfg.t, cfg.h, cfg.w)
    t = torch.zeros(batch, 2, cfg.t, cfg.h, cfg.w)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(s, t)
    finally:
        model.train(was_training)
    return int(fc.get_total_flops())


def load_checkpoint(path, map_location: str = "cpu") -> TwoArmNet:
    """Load a weights-only checkpoint (``torch.save(model.state_dict())``, optionally
    wrapped as ``{"state_dict": ..., "config": NetConfig.to_dict()}``) into a
    :class:`TwoArmNet` in eval mode. Never unpickles arbitrary objects
    (``torch.load(weights_only=True)``)."""
    from ..errors import ModelError

    try:
        obj = torch.load(str(path), map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise ModelError(f"checkpoint not found: {path}") from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal / corrupt file
        raise ModelError(f"cannot load checkpoint {path} as a weights-only state dict: {exc}") from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        cfg = NetConfig.from_dict(obj.get("config") or {})
        state = obj["state_dict"]
    else:
        cfg, state = NetConfig(), obj
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path} does not hold a state dict")
    net = TwoArmNet(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"checkpoint {path} does not match the TwoArmNet architecture: {exc}") from exc
    return net.eval()


def save_checkpoint(net: TwoArmNet, path) -> None:
    """Save ``{"state_dict": ..., "config": ...}`` (tensors, str, int, float, lists only),
    loadable with ``torch.load(weights_only=True)``."""
    torch.save({"state_dict": net.state_dict(), "config": net.config.to_dict()}, str(path))


__all__ = ["CLASSES", "NetConfig", "Arm", "TwoArmNet", "ExportWrapper", "ONNX_INPUTS", "ONNX_OUTPUTS",
           "count_params", "count_flops", "load_checkpoint", "save_checkpoint"]
