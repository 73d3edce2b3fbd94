"""Grad-CAM: hand-computed cases, the pytorch-grad-cam oracle, hooks hygiene, the ONNX CAM
fast path, trilinear upsampling and region attribution on constructed maps."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import pytest

import torch  # noqa: E402
from torch import nn  # noqa: E402

from ttsfast.errors import InputError  # noqa: E402
from ttsfast.model.gradcam import (REGIONS, ActivationsAndGradients, cam_from_raw, grad_cam,  # noqa: E402
                                   region_labels, region_shares, upsample_trilinear)
from ttsfast.model.net import ExportWrapper, NetConfig, TwoArmNet  # noqa: E402

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- tiny models
class _TinyArm(nn.Module):
    def __init__(self, cin: int, weight: np.ndarray):
        super().__init__()
        self.conv = nn.Conv3d(cin, weight.shape[0], 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weight, dtype=torch.float32).reshape(weight.shape[0], cin, 1, 1, 1))
        self.last_conv = nn.ReLU()

    def forward(self, x):
        return self.last_conv(self.conv(x))


class _TinyNet(nn.Module):
    """Arms = 1x1x1 conv + ReLU with known weights; head either linear in the pooled
    features (``W @ mean(A) + b``) or, with ``square=True``, ``sum_k W_ck mean(A_k^2)`` whose
    gradients differ from voxel to voxel."""

    def __init__(self, ws, wt, head_w, square=False):
        super().__init__()
        self.spatial = _TinyArm(1, ws)
        self.temporal = _TinyArm(2, wt)
        self.head_w = torch.tensor(head_w, dtype=torch.float32)  # [2, 2*C]
        self.square = square

    def forward(self, s, t):
        a_s, a_t = self.spatial(s), self.temporal(t)
        f = a_s ** 2 if self.square else a_s
        g = a_t ** 2 if self.square else a_t
        pooled = torch.cat([f.mean(dim=(2, 3, 4)), g.mean(dim=(2, 3, 4))], dim=1)
        return pooled @ self.head_w.T + 0.5


def _tiny_case(square: bool):
    rng = np.random.default_rng(3)
    ws = np.array([[1.0], [-0.5]])           # spatial: 1 -> 2 channels
    wt = np.array([[0.7, -0.2], [0.3, 0.9]])  # temporal: 2 -> 2 channels
    head = np.array([[0.8, -1.2, 0.4, 0.6], [-0.3, 1.5, 1.1, -0.7]])
    s = rng.standard_normal((1, 1, 2, 3, 4)).astype(np.float32)
    t = rng.standard_normal((1, 2, 2, 3, 4)).astype(np.float32)
    return _TinyNet(ws, wt, head, square), ws, wt, head, s, t


def _hand_cam(ws, wt, head, s, t, square):
    """Grad-CAM by hand with NumPy: A = relu(conv(x)); dlogit_c/dA_k = W_ck / N (linear head)
    or 2 W_ck A_k / N (square head); weights = mean of those over (t,h,w)."""
    out = {}
    for arm, w, x, off in (("spatial", ws, s[0], 0), ("temporal", wt, t[0], 2)):
        a = np.maximum(np.einsum("kc,cthw->kthw", w, x), 0)  # [C, t, h, w]
        n = a[0].size
        maps = []
        for c in range(2):
            wc = head[c, off:off + 2]
            grad = (2 * wc[:, None, None, None] * a / n) if square else (wc[:, None, None, None] * np.ones_like(a) / n)
            alpha = grad.mean(axis=(1, 2, 3))
            cam = np.maximum(np.einsum("k,kthw->thw", alpha, a), 0)
            rng_ = cam.max() - cam.min()
            maps.append((cam - cam.min()) / rng_ if rng_ > 0 else np.zeros_like(cam))
        out[arm] = np.stack(maps)[None]
    return out


@pytest.mark.parametrize("square", [False, True])
def test_grad_cam_matches_hand_computation(square):
    net, ws, wt, head, s, t = _tiny_case(square)
    got = grad_cam(net, s, t, classes=(0, 1), out_size=None)
    want = _hand_cam(ws, wt, head, s, t, square)
    for arm in ("spatial", "temporal"):
        assert got[arm].shape == (1, 2, 2, 3, 4)
        np.testing.assert_allclose(got[arm], want[arm], atol=1e-5)
        assert got[arm].min() >= 0 and got[arm].max() <= 1


def test_hooks_removed_also_on_exception():
    net = TwoArmNet(NetConfig(t=8, h=16, w=16)).eval()
    layer = net.spatial.last_conv
    with pytest.raises(RuntimeError, match="boom"):
        with ActivationsAndGradients({"spatial": layer, "temporal": net.temporal.last_conv}) as ag:
            assert len(layer._forward_hooks) == 1
            out = net(torch.randn(1, 1, 8, 16, 16), torch.randn(1, 2, 8, 16, 16))
            assert ag.activations["spatial"].shape[1] == net.config.channels[-1]
            raise RuntimeError("boom")
    for m in net.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
    assert not ag._handles
    # the tensor hook handles were released too: a new backward does not refill gradients
    ag.gradients.clear()
    out.sum().backward()
    assert ag.gradients == {}

    # grad_cam itself leaves no hooks and restores the train/eval mode, also when failing
    net.train()
    with pytest.raises(Exception):
        grad_cam(net, np.zeros((1, 1, 8, 16, 16), np.float32), np.zeros((1, 3, 8, 16, 16), np.float32))
    assert net.training
    assert all(not m._forward_hooks for m in net.modules())
    grad_cam(net, np.zeros((1, 1, 8, 16, 16), np.float32), np.zeros((1, 2, 8, 16, 16), np.float32))
    assert net.training and all(not m._forward_hooks for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def _trained_like_net(seed=0, cfg=None):
    torch.manual_seed(seed)
    net = TwoArmNet(cfg or NetConfig(t=8, h=32, w=44))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.2, 0.2)
            m.bias.data.uniform_(-0.1, 0.3)
    with torch.no_grad():
        net.head.weight.normal_(0, 1.0)
    return net.eval()


def test_cam_fast_path_equals_hooks_path():
    net = _trained_like_net()
    cfg = net.config
    rng = np.random.default_rng(0)
    s = rng.standard_normal((2, 1, cfg.t, cfg.h, cfg.w)).astype(np.float32)
    t = rng.standard_normal((2, 2, cfg.t, cfg.h, cfg.w)).astype(np.float32)
    slow = grad_cam(net, s, t, classes=(0, 1))
    with torch.no_grad():
        _, _, _, _, cs, ct = ExportWrapper(net).eval()(torch.from_numpy(s), torch.from_numpy(t))
    fast = cam_from_raw(cs.numpy(), ct.numpy(), classes=(0, 1), out_size=(cfg.t, cfg.h, cfg.w))
    for arm in ("spatial", "temporal"):
        assert fast[arm].shape == slow[arm].shape == (2, 2, cfg.t, cfg.h, cfg.w)
        assert slow[arm].max() > 0.99  # non-trivial maps
        np.testing.assert_allclose(fast[arm], slow[arm], atol=1e-4)


def test_upsample_trilinear_matches_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    for size in [(8, 10, 12), (32, 128, 176), (4, 5, 6), (7, 3, 13)]:
        want = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="trilinear",
                                               align_corners=False).numpy()
        np.testing.assert_allclose(upsample_trilinear(x, size), want, atol=1e-5)


# ----------------------------------------------------------------------------- oracle
class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in for torchvision / sklearn, which pytorch_grad_cam imports at package level
    but never uses on the GradCAM path (we must not install torchvision in this venv)."""

    ROOTS = ("torchvision", "sklearn")

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.ROOTS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        class _Stub(types.ModuleType):
            __path__: list = []

            def __getattr__(self, attr):
                if attr.startswith("__"):
                    raise AttributeError(attr)
                return type(attr, (), {"__init__": lambda self, *a, **k: None})

        return _Stub(spec.name)

    def exec_module(self, module):
        pass


@pytest.fixture
def grad_cam_pkg():
    """``pytorch_grad_cam`` (package ``grad-cam``), imported with stand-ins for torchvision and
    sklearn when those are absent; skipped when grad-cam is not installed."""
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        pytest.skip("grad-cam (pytorch_grad_cam) not installed: pip install --no-deps grad-cam ttach")
    if importlib.util.find_spec("ttach") is None:
        pytest.skip("ttach not installed (needed by pytorch_grad_cam)")
    stubbed = any(importlib.util.find_spec(r) is None for r in _StubFinder.ROOTS)
    before = set(sys.modules)
    finder = _StubFinder()
    if stubbed:
        sys.meta_path.insert(0, finder)
    try:
        import pytorch_grad_cam

        yield pytorch_grad_cam
    finally:
        if stubbed:
            sys.meta_path.remove(finder)
            for name in set(sys.modules) - before:
                if name.split(".")[0] in _StubFinder.ROOTS + ("pytorch_grad_cam",):
                    del sys.modules[name]


class _OneInput(nn.Module):
    """pytorch-grad-cam takes one input tensor: feed one arm, hold the other input fixed."""

    def __init__(self, net, arm, other):
        super().__init__()
        self.net, self.arm, self.other = net, arm, other

    def forward(self, x):
        return self.net(x, self.other) if self.arm == "spatial" else self.net(self.other, x)


def test_grad_cam_matches_pytorch_grad_cam_oracle(grad_cam_pkg):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = _trained_like_net(seed=4)
    cfg = net.config
    rng = np.random.default_rng(5)
    s = rng.standard_normal((1, 1, cfg.t, cfg.h, cfg.w)).astype(np.float32)
    t = rng.standard_normal((1, 2, cfg.t, cfg.h, cfg.w)).astype(np.float32)
    act = cfg.act_shape()[1:]
    ours = grad_cam(net, s, t, classes=(0, 1), out_size=act)
    for arm, x, other in (("spatial", s, t), ("temporal", t, s)):
        model = _OneInput(net, arm, torch.from_numpy(other)).eval()
        layer = getattr(net, arm).last_conv
        for c in (0, 1):
            with grad_cam_pkg.GradCAM(model=model, target_layers=[layer]) as cam:
                # compare before any resizing (the oracle zooms with splines, we use trilinear)
                cam.get_target_width_height = lambda _x: None
                ref = cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(c)])
            assert ref.shape == (1,) + act
            np.testing.assert_allclose(ours[arm][0, c], ref[0], atol=1e-4)
    assert all(not m._forward_hooks for m in net.modules())


# ----------------------------------------------------------------------------- regions
# A standard apical 4-chamber geometry on the 256x352 grid: apex at the top, septal annulus
# nearer the image centre (left of the LV), lateral annulus on the right.
LM = {"septal_annulus": (150.0, 200.0), "lateral_annulus": (230.0, 200.0), "apex": (190.0, 40.0)}


def _blob(shape, x, y, r=6.0):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((xx - x) ** 2 + (yy - y) ** 2 <= r * r).astype(np.float64)


def test_region_labels_geometry():
    lab = region_labels((256, 352), **LM)
    name = lambda x, y: REGIONS[lab[y, x]]  # noqa: E731
    assert name(155, 195) == "base_inferoseptal"    # just apical of the septal annulus
    assert name(225, 195) == "base_anterolateral"
    assert name(150, 202) == "base_inferoseptal"    # the AV-plane band reaches a little below the line
    assert name(170, 120) == "mid_inferoseptal"
    assert name(210, 120) == "mid_anterolateral"
    assert name(185, 50) == "apical_inferoseptal"
    assert name(195, 50) == "apical_anterolateral"
    assert name(190, 240) == "atria"
    assert name(20, 20) == "rest" and name(340, 250) == "rest"


def test_region_shares_on_constructed_maps():
    T, H, W = 32, 256, 352
    ed, es = 0, 12
    sal = np.zeros((T, H, W))
    # 3 units of mass on the septal AV plane during systole, 1 unit in the lateral apical
    # region during diastole
    sal[2:5] += _blob((H, W), 155, 192)[None]
    sal[20] += _blob((H, W), 200, 60)
    res = region_shares(sal, LM, ed=ed, es=es)
    assert res.regions["base_inferoseptal"] == pytest.approx(0.75, abs=1e-9)
    assert res.regions["apical_anterolateral"] == pytest.approx(0.25, abs=1e-9)
    assert res.base == pytest.approx(0.75) and res.apical == pytest.approx(0.25) and res.mid == 0
    assert res.systole == pytest.approx(0.75) and res.diastole == pytest.approx(0.25)
    assert sum(res.regions.values()) == pytest.approx(1.0)

    # mirrored display: swap the annulus points -> septal side follows the septal annulus
    mirrored = {"septal_annulus": (351 - 150.0, 200.0), "lateral_annulus": (351 - 230.0, 200.0),
                "apex": (351 - 190.0, 40.0)}
    res_m = region_shares(sal[:, :, ::-1], mirrored, ed=ed, es=es)
    assert res_m.regions["base_inferoseptal"] == pytest.approx(0.75)

    # uniform map -> shares equal pixel-area fractions; atria and rest non-empty
    uni = region_shares(np.ones((4, H, W)), LM, ed=0, es=2)
    lab = region_labels((H, W), **LM)
    for i, r in enumerate(REGIONS):
        assert uni.regions[r] == pytest.approx((lab == i).mean())
    assert uni.systole == pytest.approx(0.5)

    zero = region_shares(np.zeros((4, 8, 8)), {"septal_annulus": (2, 6), "lateral_annulus": (6, 6), "apex": (4, 1)},
                         ed=0, es=2)
    assert zero.base == 0 and zero.notes


def test_region_shares_rejects_bad_input():
    with pytest.raises(InputError):
        region_shares(np.ones((4, 8, 8)), LM, ed=3, es=2)
    with pytest.raises(InputError):
        region_shares(-np.ones((4, 8, 8)), LM, ed=0, es=2)
    with pytest.raises(InputError):
        region_shares(np.ones((4, 8, 8)), {"apex": (1, 1)}, ed=0, es=2)
    with pytest.raises(InputError):
        region_shares(np.ones((4, 8, 8)), {"septal_annulus": (1, 1), "lateral_annulus": (1, 1), "apex": (1, 1)},
                      ed=0, es=2)
