"""Grad-CAM of the two-arm CNN, and where its saliency falls in the heart and the cycle.

Two paths give the same maps:

* :func:`grad_cam` — the PyTorch path: :class:`ActivationsAndGradients` (a small hooks class
  used as a context manager, after pytorch-grad-cam) records each arm's last-conv
  activations ``A`` [B,C,t,h,w] and the gradients of a class logit with respect to them;
  channel weights are the gradients averaged over (t,h,w); ``ReLU(sum_k w_k A_k)``;
  trilinear upsampling to the requested grid; per-map min-max normalisation to [0, 1].
* :func:`cam_from_raw` — the fast path from the ONNX outputs ``cam_spatial`` /
  ``cam_temporal`` (``sum_k W_ck A_k``). The head is global average pooling then a linear
  layer, so the Grad-CAM weights are exactly ``W_ck / (t*h*w)``: after ReLU and min-max
  normalisation both paths give the same map. Pure NumPy, no torch import.

:func:`region_shares` tells how much of a saliency map lies on the base (AV plane), the
mid and apical thirds of each wall, the atria and elsewhere, and in systole vs diastole.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..constants import FRAMES_PER_BEAT
from ..errors import InputError

ARMS = ("spatial", "temporal")


# ----------------------------------------------------------------------------- hooks path
class ActivationsAndGradients:
    """Record activations (forward hooks) and their gradients (tensor hooks) of named layers.

    Use as a context manager; every hook handle is removed on exit, also on exceptions::

        with ActivationsAndGradients({"spatial": net.spatial.last_conv}) as ag:
            logits = net(x_s, x_t)
            logits[:, 1].sum().backward()
        ag.activations["spatial"], ag.gradients["spatial"]   # [B,C,t,h,w] each
    """

    def __init__(self, layers: Mapping[str, Any]):
        self.layers = dict(layers)
        self.activations: dict[str, Any] = {}
        self.gradients: dict[str, Any] = {}
        self._handles: list[Any] = []

    def _forward_hook(self, name: str):
        def hook(module, inputs, output):
            self.activations[name] = output.detach()
            if output.requires_grad:
                def save_grad(grad, _name=name):
                    self.gradients[_name] = grad.detach()

                self._handles.append(output.register_hook(save_grad))
        return hook

    def __enter__(self) -> "ActivationsAndGradients":
        try:
            for name, layer in self.layers.items():
                self._handles.append(layer.register_forward_hook(self._forward_hook(name)))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Remove every hook handle (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __exit__(self, *exc) -> None:
        self.release()


def _normalise01(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Min-max normalise over ``axes``; a constant map becomes all zeros."""
    x = np.asarray(x, dtype=np.float32)
    lo = x.min(axis=axes, keepdims=True)
    hi = x.max(axis=axes, keepdims=True)
    rng = hi - lo
    scale = np.where(rng > 0, 1.0 / np.where(rng > 0, rng, 1.0), 0.0).astype(np.float32)
    out = x - lo  # float32 throughout: these maps are [B, K, 32, 256, 352]
    out *= scale
    return out


def _linear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices/weights of 1-D linear resizing with ``align_corners=False`` (PyTorch's
    convention: ``src = (dst + 0.5) * n_in / n_out - 0.5``, clamped at 0)."""
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    return i0, i1, lam


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix of 1-D linear resizing (``align_corners=False``)."""
    i0, i1, lam = _linear_weights(n_in, n_out)
    m = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - lam)
    np.add.at(m, (rows, i1), lam)
    return m


def upsample_trilinear(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Trilinear resizing of the last three axes of ``x`` [..., t, h, w] to ``size``
    (same result as ``torch.nn.functional.interpolate(mode="trilinear", align_corners=False)``);
    separable, one small matrix product per axis."""
    x = np.asarray(x, dtype=np.float32)
    lead = x.shape[:-3]
    t, h, w = x.shape[-3:]
    nt, nh, nw = (int(v) for v in size)
    n = int(np.prod(lead, dtype=np.int64)) if lead else 1
    y = x.reshape(n, t, h * w)
    if nt != t:  # time first: the smallest array
        y = _interp_matrix(t, nt) @ y                                  # [n, nt, h*w]
    y = y.reshape(n * nt, h, w)
    if nh != h:
        y = _interp_matrix(h, nh) @ y                                  # [n*nt, nh, w]
    y = y.reshape(n * nt * nh, w)
    if nw != w:
        y = y @ _interp_matrix(w, nw).T                                # [n*nt*nh, nw]
    return np.ascontiguousarray(y, dtype=np.float32).reshape(lead + (nt, nh, nw))


def _finish(raw: np.ndarray, out_size: Sequence[int] | None) -> np.ndarray:
    """ReLU, upsample, normalise per map: raw [B, K, t, h, w] -> [B, K, T, H, W] in [0, 1]."""
    cam = np.maximum(raw, 0.0)
    if out_size is not None:
        cam = upsample_trilinear(cam, out_size)
    return _normalise01(cam, axes=(-3, -2, -1))


def grad_cam(net, spatial, temporal, classes: Sequence[int] = (0, 1),
             out_size: Sequence[int] | None = None) -> dict[str, Any]:
    """Grad-CAM of both arms of a :class:`~ttsfast.model.net.TwoArmNet` (PyTorch path).

    Parameters
    ----------
    net : TwoArmNet
        Evaluated in eval mode (its mode is restored afterwards); its weights are not changed.
    spatial, temporal : array or tensor
        ``[B,1,T,H,W]`` and ``[B,2,T,H,W]`` float32 model inputs (:func:`make_inputs`).
    classes : sequence of int
        Target classes (0 = STEMI, 1 = TTS).
    out_size : (T, H, W) or None
        Grid of the returned maps; None = the model input grid.

    Returns
    -------
    dict
        ``{"spatial": [B, K, T, H, W], "temporal": [B, K, T, H, W]}`` float32 maps in [0, 1]
        (K = len(classes)), plus ``"logits"`` [B, 2].
    """
    from .._optional import require_torch

    torch = require_torch("saliency='gradcam' (the PyTorch hooks path)")
    s = torch.as_tensor(np.asarray(spatial, np.float32))
    t = torch.as_tensor(np.asarray(temporal, np.float32))
    if out_size is None:
        out_size = tuple(s.shape[-3:])
    was_training = net.training
    net.eval()
    layers = {"spatial": net.spatial.last_conv, "temporal": net.temporal.last_conv}
    raw = {arm: [] for arm in ARMS}
    try:
        with torch.enable_grad(), ActivationsAndGradients(layers) as ag:
            logits = net(s, t)
            for c in classes:
                ag.gradients.clear()
                net.zero_grad(set_to_none=True)
                logits[:, int(c)].sum().backward(retain_graph=True)
                for arm in ARMS:
                    a = ag.activations[arm]
                    g = ag.gradients[arm]
                    w = g.mean(dim=(2, 3, 4), keepdim=True)  # [B, C, 1, 1, 1]
                    raw[arm].append((w * a).sum(dim=1).numpy())  # [B, t, h, w]
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)
    out: dict[str, Any] = {arm: _finish(np.stack(raw[arm], axis=1), out_size) for arm in ARMS}
    out["logits"] = logits.detach().numpy()
    return out


def cam_from_raw(cam_spatial: np.ndarray, cam_temporal: np.ndarray, classes: Sequence[int] = (0, 1),
                 out_size: Sequence[int] | None = (FRAMES_PER_BEAT, 128, 176)) -> dict[str, np.ndarray]:
    """CAM fast path from the ONNX outputs ``cam_spatial`` / ``cam_temporal`` [B, 2, t, h, w].

    Returns ``{"spatial": [B, K, T, H, W], "temporal": [B, K, T, H, W]}`` in [0, 1], equal to
    :func:`grad_cam` for a head that is linear in globally pooled features."""
    idx = list(classes)
    return {"spatial": _finish(np.asarray(cam_spatial, np.float32)[:, idx], out_size),
            "temporal": _finish(np.asarray(cam_temporal, np.float32)[:, idx], out_size)}


# ----------------------------------------------------------------------------- regions
#: Names of the regions :func:`region_shares` reports, in order.
REGIONS = ("base_inferoseptal", "base_anterolateral", "mid_inferoseptal", "mid_anterolateral",
           "apical_inferoseptal", "apical_anterolateral", "atria", "rest")


@dataclass
class RegionShares:
    """Share of a saliency map's total mass per region and per cardiac phase (each sums to 1).

    Attributes
    ----------
    regions : dict
        ``REGIONS`` -> share in [0, 1].
    base, mid, apical : float
        Both walls together, per level (base = AV-plane band + basal third).
    systole, diastole : float
        Share in frames ``ed <= t < es`` and in the other frames.
    """

    regions: dict[str, float]
    base: float
    mid: float
    apical: float
    systole: float
    diastole: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"regions": dict(self.regions), "base": self.base, "mid": self.mid, "apical": self.apical,
                "systole": self.systole, "diastole": self.diastole, "notes": list(self.notes)}


def region_labels(shape: tuple[int, int], septal_annulus: Sequence[float], lateral_annulus: Sequence[float],
                  apex: Sequence[float], av_band: float = 0.10, width: float = 1.5,
                  atrial_depth: float = 1.0) -> np.ndarray:
    """Label each pixel of an ``(H, W)`` grid with an index into :data:`REGIONS`.

    Geometry: M = midpoint of the annulus points, the long axis runs from M to the apex.
    ``u`` = position along the long axis (0 at M, 1 at the apex); ``v`` = signed distance from
    the axis in units of the half annulus width, positive on the septal-annulus side.
    Inside the LV band ``|v| <= width * (1 - 0.5 * clip(u, 0, 1))`` (tapering to the apex):
    base ``-av_band <= u < 1/3``, mid ``1/3 <= u < 2/3``, apical ``2/3 <= u <= 1 + av_band``,
    split by the sign of ``v`` into inferoseptal (septal side) and anterolateral. Atria:
    ``-atrial_depth <= u < -av_band`` and ``|v| <= width``. Everything else is "rest".
    Coordinates (x, y) are in pixels of the same grid (x right, y down).
    """
    S = np.asarray(septal_annulus, np.float64)
    L = np.asarray(lateral_annulus, np.float64)
    A = np.asarray(apex, np.float64)
    M = 0.5 * (S + L)
    axis = A - M
    ax_len2 = float(axis @ axis)
    half_w = 0.5 * float(np.hypot(*(S - L)))
    if ax_len2 < 1.0 or half_w < 0.5:
        raise InputError("landmarks are degenerate: apex and annulus points must be distinct pixels apart")
    perp = np.array([-axis[1], axis[0]]) / np.sqrt(ax_len2)
    if (S - M) @ perp < 0:
        perp = -perp
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    px, py = xx - M[0], yy - M[1]
    u = (px * axis[0] + py * axis[1]) / ax_len2
    v = (px * perp[0] + py * perp[1]) / half_w
    lab = np.full(shape, REGIONS.index("rest"), np.int8)
    lim = width * (1.0 - 0.5 * np.clip(u, 0.0, 1.0))
    in_lv = (np.abs(v) <= lim) & (u >= -av_band) & (u <= 1.0 + av_band)
    septal = v >= 0
    for name, lo, hi in (("base", -np.inf, 1 / 3), ("mid", 1 / 3, 2 / 3), ("apical", 2 / 3, np.inf)):
        sel = in_lv & (u >= lo) & (u < hi)
        lab[sel & septal] = REGIONS.index(f"{name}_inferoseptal")
        lab[sel & ~septal] = REGIONS.index(f"{name}_anterolateral")
    atria = (u < -av_band) & (u >= -atrial_depth) & (np.abs(v) <= width)
    lab[atria] = REGIONS.index("atria")
    return lab


def region_shares(saliency: np.ndarray, landmarks: Mapping[str, Sequence[float]], ed: int, es: int,
                  **geometry: float) -> RegionShares:
    """Share of a saliency map in each region of the heart and in systole vs diastole.

    Parameters
    ----------
    saliency : np.ndarray
        float ``[T, H, W]`` non-negative map on the grid of the landmarks (normally the
        256x352 analysis grid, one beat of T frames).
    landmarks : mapping
        ``septal_annulus``, ``lateral_annulus``, ``apex``: (x, y) pixels on that grid.
    ed, es : int
        End-diastole and end-systole frame indices of the beat (``0 <= ed < es <= T``).
    **geometry
        ``av_band``, ``width``, ``atrial_depth`` passed to :func:`region_labels`.

    Returns
    -------
    RegionShares
        All shares are 0 when the map is all zeros (with a note).
    """
    sal = np.asarray(saliency)
    if sal.dtype not in (np.float32, np.float64):
        sal = sal.astype(np.float64)
    if sal.ndim != 3:
        raise InputError(f"saliency must be [T,H,W]; got shape {sal.shape}")
    # checked and summed without a float64 copy of the [T,H,W] map (11 MB per arm in analyze():
    # the copy and its page faults made this stage's time swing 8-95 ms); a NaN or an infinity
    # makes the float64 sum non-finite
    spatial_mass = sal.sum(axis=0, dtype=np.float64)
    if not np.isfinite(spatial_mass).all() or (sal.size and float(sal.min()) < 0):
        raise InputError("saliency must be finite and non-negative")
    t = sal.shape[0]
    if not (0 <= int(ed) < int(es) <= t):
        raise InputError(f"need 0 <= ed < es <= T={t}; got ed={ed}, es={es}")
    for key in ("septal_annulus", "lateral_annulus", "apex"):
        if key not in landmarks:
            raise InputError(f"landmarks must contain {key!r} as (x, y)")
    lab = region_labels(sal.shape[1:], landmarks["septal_annulus"], landmarks["lateral_annulus"],
                        landmarks["apex"], **geometry)
    total = float(spatial_mass.sum())
    notes: list[str] = []
    if total <= 0:
        notes.append("saliency map is all zeros")
        shares = {r: 0.0 for r in REGIONS}
        return RegionShares(shares, 0.0, 0.0, 0.0, 0.0, 0.0, notes)
    sums = np.bincount(lab.ravel(), weights=spatial_mass.ravel(), minlength=len(REGIONS))
    shares = {r: float(sums[i] / total) for i, r in enumerate(REGIONS)}
    per_frame = sal.sum(axis=(1, 2), dtype=np.float64)
    sys_share = float(per_frame[int(ed):int(es)].sum() / total)
    return RegionShares(
        regions=shares,
        base=shares["base_inferoseptal"] + shares["base_anterolateral"],
        mid=shares["mid_inferoseptal"] + shares["mid_anterolateral"],
        apical=shares["apical_inferoseptal"] + shares["apical_anterolateral"],
        systole=sys_share, diastole=1.0 - sys_share, notes=notes)


__all__ = ["ARMS", "ActivationsAndGradients", "grad_cam", "cam_from_raw", "upsample_trilinear",
           "REGIONS", "RegionShares", "region_labels", "region_shares"]
