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

from ..constants import FRAMES_PER_BEAT
from .._optional import require_torch

torch = require_torch("the PyTorch network (training, the Grad-CAM hooks path, .pt checkpoints, export)")
nn = torch.nn

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

    t: int = FRAMES_PER_BEAT
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


def _fold_bn(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference-time batch norm folded into the convolution before it: ``(weight, bias)``
    with ``conv_{w,b}(x) == bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * scale.view(-1, 1, 1, 1, 1)
    return w.detach().clone(), (bn.bias - bn.running_mean * scale).detach().clone()


class _DepthwiseAs2D(nn.Module):
    """A depthwise ``kt x 3 x 3`` 3D convolution (+ folded BN, + ReLU) on a fixed ``t x h x w``
    grid, written as ``kt`` depthwise 2D convolutions over ``[B, C*t_out, h, w]``, one per
    temporal tap, summed. Same arithmetic as ``Conv3d(groups=C)``; ONNX Runtime's CPU kernels
    run 2D depthwise convolutions several times faster than grouped 3D ones (which go through
    im2col + GEMM per channel)."""

    def __init__(self, conv: nn.Conv3d, bn: nn.BatchNorm3d, t_in: int):
        super().__init__()
        w, b = _fold_bn(conv, bn)
        c = conv.in_channels
        kt, st, pt = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        self.c, self.kt, self.st, self.pt = c, kt, st, pt
        self.t_out = (t_in + 2 * pt - kt) // st + 1
        self.stride, self.padding = tuple(conv.stride[1:]), tuple(conv.padding[1:])
        # channel order after reshaping [B, C, t_out, h, w] -> [B, C*t_out, h, w] is c-major
        for dt in range(kt):
            self.register_buffer(f"w{dt}", w[:, :, dt].repeat_interleave(self.t_out, 0).contiguous())
        self.register_buffer("b", b.repeat_interleave(self.t_out).view(1, -1, 1, 1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[3], x.shape[4]
        xp = nn.functional.pad(x, (0, 0, 0, 0, self.pt, self.pt)) if self.pt else x
        acc = None
        n = self.c * self.t_out
        for dt in range(self.kt):
            taps = xp[:, :, dt:dt + self.st * (self.t_out - 1) + 1:self.st].reshape(-1, n, h, w)
            y = nn.functional.conv2d(taps, getattr(self, f"w{dt}"), None, self.stride, self.padding, groups=n)
            acc = y if acc is None else acc + y
        y = torch.relu(acc + self.b)
        return y.reshape(-1, self.c, self.t_out, y.shape[2], y.shape[3])


class _FoldedConv(nn.Module):
    """Conv3d with its batch norm folded in, then ReLU."""

    def __init__(self, conv: nn.Conv3d, bn: nn.BatchNorm3d):
        super().__init__()
        w, b = _fold_bn(conv, bn)
        self.register_buffer("w", w)
        self.register_buffer("b", b)
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(nn.functional.conv3d(x, self.w, self.b, self.stride, self.padding, 1, self.groups))


def inference_arm(arm: Arm, t_in: int) -> nn.Sequential:
    """The inference graph of one :class:`Arm` (eval mode) for export: batch norm folded into
    each convolution, and every depthwise 3D convolution as per-tap 2D depthwise convolutions
    (:class:`_DepthwiseAs2D`). Same outputs as ``arm(x)`` up to float rounding (tested);
    ``t_in``: frames of the arm's input."""
    layers = list(arm.features)
    out: list[nn.Module] = []
    t = t_in
    for i in range(0, len(layers), 3):
        conv, bn = layers[i], layers[i + 1]
        if conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels:
            out.append(_DepthwiseAs2D(conv, bn, t))
        else:
            out.append(_FoldedConv(conv, bn))
        t = (t + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    return nn.Sequential(*out)


class ExportWrapper(nn.Module):
    """What goes into the ONNX file: logits, probabilities, both arms' last-conv activations
    and their raw class activation maps ``cam[b, c] = sum_k w_ck A_k`` (no bias, no ReLU).

    ``inference_graph=True`` (what the exporter uses) runs each arm as
    :func:`inference_arm` -- folded batch norm, depthwise 3D convolutions as 2D ones -- a
    graph ONNX Runtime executes faster on CPU, with the same outputs; False runs the
    network's own modules (the reference the export is verified against)."""

    def __init__(self, net: TwoArmNet, inference_graph: bool = False):
        super().__init__()
        self.net = net
        self.arms = None
        if inference_graph:
            self.arms = nn.ModuleList([inference_arm(net.spatial, net.config.t),
                                       inference_arm(net.temporal, net.config.t)])

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor):
        if self.arms is None:
            logits, a_s, a_t = self.net.forward_all(spatial, temporal)
        else:
            a_s, a_t = self.arms[0](spatial), self.arms[1](temporal)
            logits = self.net.head(TwoArmNet.pool(a_s, a_t))
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


__all__ = ["CLASSES", "NetConfig", "Arm", "TwoArmNet", "ExportWrapper", "ONNX_INPUTS", "ONNX_OUTPUTS", "inference_arm",
           "count_params", "count_flops", "load_checkpoint", "save_checkpoint"]
