"""The two-arm CNN: shapes, size, checkpoints (weights-only), inputs, export parity, training
helpers (AUC, logistic regression, folds, augmentation)."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: E402

# export/ is a repository tool, not part of the installed package: make it importable without
# shadowing the installed ttsfast (appended, not prepended).
_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.append(_REPO)

from accuracy_targets import check_target, target_cases  # noqa: E402
from ttsfast.errors import InputError, ModelError  # noqa: E402
from ttsfast.model.inputs import FLOW_SCALE, make_inputs  # noqa: E402
from ttsfast.model.net import (CLASSES, NetConfig, TwoArmNet, count_flops, count_params,  # noqa: E402
                               load_checkpoint, save_checkpoint)

torch.set_num_threads(1)


def test_shapes_flops_params():
    net = TwoArmNet().eval()
    cfg = net.config
    s = torch.randn(2, 1, 32, 128, 176)
    t = torch.randn(2, 2, 32, 128, 176)
    with torch.no_grad():
        logits, a_s, a_t = net.forward_all(s, t)
    assert CLASSES == ("STEMI", "TTS")
    assert logits.shape == (2, 2)
    assert a_s.shape == a_t.shape == (2,) + cfg.act_shape() == (2, 64, 8, 16, 22)
    # small enough for the bedside: < 0.5 GFLOPs and < 50k parameters per clip
    flops = count_flops(net)
    assert 1e8 < flops < 5e8
    assert 5_000 < count_params(net) < 50_000
    # FLOPs scale with the batch
    assert count_flops(net, batch=2) == 2 * flops


def test_checkpoint_roundtrip_weights_only(tmp_path):
    torch.manual_seed(0)
    net = TwoArmNet(NetConfig(t=8, h=32, w=44, channels=(4, 8, 8, 12))).eval()
    p = tmp_path / "m.pt"
    save_checkpoint(net, p)
    back = load_checkpoint(p)
    assert back.config == net.config
    s, t = torch.randn(1, 1, 8, 32, 44), torch.randn(1, 2, 8, 32, 44)
    with torch.no_grad():
        assert torch.equal(net(s, t), back(s, t))
    # a bare state dict (torch.save(model.state_dict())) of the default architecture loads too
    p2 = tmp_path / "bare.pt"
    torch.save(TwoArmNet().state_dict(), p2)
    assert isinstance(load_checkpoint(p2), TwoArmNet)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_refuses_pickled_objects(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil()}, p)
    with pytest.raises(ModelError, match="weights-only"):
        load_checkpoint(p)
    p2 = tmp_path / "raw.pt"
    p2.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ModelError):
        load_checkpoint(p2)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    p3 = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, p3)
    with pytest.raises(ModelError, match="does not match"):
        load_checkpoint(p3)


# ----------------------------------------------------------------------------- inputs
def test_make_inputs_resizes_and_scales_flow():
    T, h, w = 32, 256, 352
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (T, h, w), dtype=np.uint8)
    flow = np.zeros((T - 1, h, w, 2), np.float32)
    flow[..., 0] = 2.0   # 2 analysis px/frame to the right = 1 model px/frame
    flow[..., 1] = -3.0  # 3 analysis px/frame up = 1.5 model px/frame
    mask = np.zeros((h, w), bool)
    mask[20:240, 30:330] = True
    s, f = make_inputs(frames, flow, mask)
    assert s.shape == (1, 1, 32, 128, 176) and f.shape == (1, 2, 32, 128, 176)
    assert s.dtype == f.dtype == np.float32
    inside = np.zeros((128, 176), bool)
    inside[12:118, 17:163] = True
    np.testing.assert_allclose(f[0, 0][:, inside], 1.0 / FLOW_SCALE, rtol=1e-5)
    np.testing.assert_allclose(f[0, 1][:, inside], -1.5 / FLOW_SCALE, rtol=1e-5)
    assert (f[:, :, :, :5] == 0).all() and (s[:, :, :, :5] == 0).all()  # outside the mask
    vals = s[0, 0][:, inside]
    assert abs(vals.mean()) < 0.1 and 0.8 < vals.std() < 1.2  # standardised inside the mask
    # gain/offset invariance of the spatial arm (within rounding)
    s2, _ = make_inputs(np.clip(frames.astype(int) // 2 + 20, 0, 255).astype(np.uint8), flow, mask)
    assert np.abs(s2 - s).mean() < 0.05


def test_make_inputs_time_resampling_and_errors():
    frames = np.full((17, 64, 88), 100, np.uint8)
    flow = np.full((17, 64, 88, 2), 1.0, np.float32)
    s, f = make_inputs(frames, flow, None, t=32, h=32, w=44)
    # 16 steps resampled to 31: each new step is 16/31 of an old one; resize halves the vectors
    np.testing.assert_allclose(f[0, 0], 0.5 * 16 / 31 / FLOW_SCALE, rtol=1e-5)
    assert np.abs(s).max() < 1e-4  # constant frame: std floored at 1, mean removed
    with pytest.raises(InputError):
        make_inputs(frames.astype(np.float32), flow)
    with pytest.raises(InputError):
        make_inputs(frames, flow[:, :10])
    bad = flow.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        make_inputs(frames, bad)
    with pytest.raises(InputError, match="empty"):
        make_inputs(frames, flow, np.zeros((64, 88), bool))


# ----------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from export.export_onnx import export_checkpoint

    torch.manual_seed(1)
    net = TwoArmNet()
    for m in net.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.2, 0.2)
    with torch.no_grad():
        net.head.weight.normal_(0, 2.0)
    d = tmp_path_factory.mktemp("exp")
    save_checkpoint(net, d / "ckpt.pt")
    res = export_checkpoint(d / "ckpt.pt", d / "out", info={"training": {"note": "test"}, "metrics": {"auc": 0.5}})
    return net.eval(), res, d


def test_export_parity_card_and_triton(exported):
    import onnx

    from ttsfast.model.card import NOT_FOR_PATIENTS, sha256_file

    net, res, d = exported
    assert max(v for k, v in res["parity"].items() if k != "ref_logit_absmax") <= 1e-4
    assert res["parity"]["ref_logit_absmax"] > 0.01  # the check compared non-trivial outputs
    m = onnx.load(res["onnx"])
    assert m.opset_import[0].version >= 17
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in m.graph.output] == ["logits", "probs", "act_spatial", "act_temporal",
                                                 "cam_spatial", "cam_temporal"]
    card = json.loads((d / "out" / "model_card.json").read_text())
    assert card["onnx_sha256"] == sha256_file(res["onnx"])
    assert card["WARNING"] == NOT_FOR_PATIENTS and "NOT TRAINED ON PATIENTS" in card["WARNING"]
    assert card["sha256"] == card["onnx_sha256"] and card["warning"] == NOT_FOR_PATIENTS
    assert NOT_FOR_PATIENTS in card["trained_on"]
    assert card["params"] == count_params(net) and card["flops_per_clip"] == count_flops(net)
    assert card["training"] == {"note": "test"} and card["metrics"] == {"auc": 0.5}
    cfg = (d / "out" / "triton" / "ttsfast" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in cfg and "dynamic_batching" in cfg and "max_batch_size: 16" in cfg
    assert "dims: [ 2, 32, 128, 176 ]" in cfg and "dims: [ 64, 8, 16, 22 ]" in cfg
    assert (d / "out" / "triton" / "ttsfast" / "1" / "model.onnx").read_bytes() == (d / "out" / "model.onnx").read_bytes()


def test_export_parity_batch_sizes(exported):
    import onnxruntime as ort

    from export.export_onnx import parity_inputs
    from ttsfast.model.net import ExportWrapper

    net, res, _ = exported
    sess = ort.InferenceSession(res["onnx"], providers=["CPUExecutionProvider"])
    s, f = parity_inputs(net, batch=5, seed=7)
    with torch.no_grad():
        ref = [r.numpy() for r in ExportWrapper(net).eval()(torch.from_numpy(s), torch.from_numpy(f))]
    for b in (1, 5):
        got = sess.run(None, {"spatial": s[:b], "temporal": f[:b]})
        for g, r in zip(got, ref):
            assert np.abs(g - r[:b]).max() <= 1e-4


@pytest.mark.parametrize("cfg", [NetConfig(),
                                 NetConfig(t=20, h=40, w=56, channels=(4, 8, 8),
                                           strides=((1, 2, 2), (2, 1, 2), (1, 2, 1)))],
                         ids=["default", "odd-strides"])
def test_inference_graph_matches_the_network(cfg):
    """The exported inference graph (folded BN; depthwise 3D convs as per-tap 2D ones) gives
    the network's own outputs, for the default and for an unusual config (temporal stride 1
    and 2 in the depthwise layers, odd frame counts), with non-trivial BN statistics."""
    from ttsfast.model.net import ExportWrapper

    torch.manual_seed(3)
    net = TwoArmNet(cfg)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_var.uniform_(0.3, 3.0)
            m.running_mean.uniform_(-0.5, 0.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    net.eval()
    g = torch.Generator().manual_seed(4)
    s = torch.randn(3, 1, cfg.t, cfg.h, cfg.w, generator=g)
    f = torch.randn(3, 2, cfg.t, cfg.h, cfg.w, generator=g)
    with torch.no_grad():
        ref = ExportWrapper(net)(s, f)
        got = ExportWrapper(net, inference_graph=True).eval()(s, f)
    for r, o in zip(ref, got):
        assert r.shape == o.shape
        assert float((r - o).abs().max()) <= 1e-4 * max(1.0, float(r.abs().max()))
    assert float(ref[2].abs().max()) > 0.1  # non-trivial activations were compared


def test_exported_graph_has_no_grouped_3d_convolution(exported):
    """What makes ONNX Runtime fast here: no grouped Conv with a 3D kernel is left in the file
    (ONNX Runtime runs those as im2col + GEMM per channel)."""
    import onnx

    _, res, _ = exported
    m = onnx.load(res["onnx"])
    init = {i.name: list(i.dims) for i in m.graph.initializer}
    grouped = [n for n in m.graph.node if n.op_type == "Conv"
               and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert grouped, "the depthwise convolutions should be exported as grouped 2D Conv nodes"
    assert all(len(init.get(n.input[1], [0] * 4)) == 4 for n in grouped)
    assert not any(n.op_type == "BatchNormalization" for n in m.graph.node)


def test_export_failure_leaves_no_files(tmp_path, monkeypatch):
    import export.export_onnx as ex

    save_checkpoint(TwoArmNet(), tmp_path / "c.pt")

    def bad_verify(*a, **k):
        raise ModelError("forced mismatch")

    monkeypatch.setattr(ex, "verify_onnx", bad_verify)
    with pytest.raises(ModelError):
        ex.export_checkpoint(tmp_path / "c.pt", tmp_path / "o")
    assert list((tmp_path / "o").iterdir()) == []


# ----------------------------------------------------------------------------- training helpers
def test_auc_and_metrics():
    from ttsfast.model.train import auc, binary_metrics

    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # ties count half
    assert auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.5, 0.8])) == 0.75
    rng = np.random.default_rng(0)
    yy = rng.integers(0, 2, 500)
    ss = rng.random(500) + 0.3 * yy
    # Mann-Whitney definition, brute force
    pos, neg = ss[yy == 1], ss[yy == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auc(yy, ss) == pytest.approx(brute)
    m = binary_metrics(np.array([0, 0, 1, 1, 1]), np.array([0.2, 0.7, 0.9, 0.6, 0.3]))
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(1 / 2)


def test_logistic_regression_recovers_separable_signal():
    from ttsfast.model.train import auc, fit_logistic, predict_logistic

    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 3))
    y = (x[:, 0] - 0.5 * x[:, 2] + 0.3 * rng.standard_normal(400) > 0).astype(int)
    model = fit_logistic(x[:300], y[:300])
    p = predict_logistic(model, x[300:])
    assert auc(y[300:], p) > 0.95
    assert model["coef"][0] > 0 and model["coef"][2] < 0 and abs(model["coef"][1]) < 0.5 * model["coef"][0]


def test_stratified_folds():
    from ttsfast.model.train import stratified_folds

    y = np.array([0] * 13 + [1] * 7)
    folds = stratified_folds(y, k=4, seed=0)
    assert len(folds) == 4
    all_val = np.concatenate([v for _, v in folds])
    assert sorted(all_val.tolist()) == list(range(20))
    for tr, va in folds:
        assert not set(tr) & set(va)
        assert 1 <= y[va].sum() <= 2 and 3 <= (1 - y[va]).sum() <= 4


def test_augment_keeps_shapes_and_lv_side():
    from ttsfast.model.train import augment

    rng = np.random.default_rng(0)
    s = np.zeros((1, 32, 128, 176), np.float32)
    f = np.zeros((2, 32, 128, 176), np.float32)
    s[0, :, 40:60, 120:140] = 1.0   # a bright blob on the right half
    f[0, :, 40:60, 120:140] = 1.0
    for _ in range(5):
        s2, f2 = augment(s, f, rng)
        assert s2.shape == s.shape and f2.shape == f.shape
        cols = np.nonzero(np.abs(s2[0]).sum(axis=(0, 1)) > 0.5 * np.abs(s2[0]).sum(axis=(0, 1)).max())[0]
        assert cols.mean() > 100  # never mirrored: the blob stays on the right
        assert np.isfinite(s2).all() and np.isfinite(f2).all()


@pytest.mark.slow
def test_cli_train_synthetic_smoke(tmp_path):
    """`ttsfast train --synthetic 4` end to end (synth -> pipeline -> training -> weights-only
    checkpoint + train.json). A smoke test of the plumbing, not of accuracy."""
    from ttsfast.cli import main

    out = tmp_path / "m.pt"
    rc = main(["train", "--synthetic", "4", "--folds", "0", "--epochs", "1", "-o", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--threads", "1"])
    assert rc == 0
    info = json.loads(out.with_suffix(".train.json").read_text())
    assert info["training"]["n_clips"] + len(info["training"]["skipped"]) == 4
    assert isinstance(load_checkpoint(out), TwoArmNet)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == info["training"]["n_clips"]


@pytest.mark.slow
def test_shipped_model_discriminates_fresh_synthetic_clips(tmp_path):
    """The shipped model, through the shipped ONNX runtime path, on 24 synthetic clips it never
    saw (seeds 300000+, neither training nor held-out): TTS must rank above STEMI. Expected
    ~0.84 (the card's held-out AUC); with 24 clips the AUC's SD is ~0.08, so the bar is 0.65,
    far above chance (0.5) and below what a working model gives."""
    from ttsfast.model.runtime import predict_batch
    from ttsfast.model.train import binary_metrics, build_synthetic_cohort

    coh = build_synthetic_cohort(24, seed=300000, cache_dir=tmp_path, progress=False)
    assert len(coh.y) == 24 and coh.y.sum() == 12
    p = predict_batch(coh.spatial.astype(np.float32), coh.temporal.astype(np.float32)).p_tts
    m = binary_metrics(coh.y, p)
    print(f"\nshipped model on 24 fresh synthetic clips: {m}")
    assert m["auc"] >= 0.65


@pytest.fixture(scope="module")
def card_auc_gap():
    """The shipped model card, and the held-out AUCs (CNN, logistic regression on the true
    mechanics) that the 0.03 target is judged on: the pooled held-out sets when the card has a
    second one, else the first."""
    from ttsfast.model.runtime import model_card

    card = model_card()
    ho = card["metrics"]["held_out"]
    pooled = card["metrics"].get("held_out_pooled")
    judged = pooled if pooled is not None else ho
    return card, judged["cnn"]["auc"], judged["logreg_true_mechanics"]["auc"]


def test_model_card_reports_the_gap_to_the_true_mechanics(card_auc_gap):
    """The shipped card states the held-out AUC of the CNN and of the logistic regression on the
    true mechanics, and their difference; the issue's target is a gap of at most 0.03
    (test_model_auc_gap_target)."""
    card = card_auc_gap[0]
    ho = card["metrics"]["held_out"]
    cnn, lr = ho["cnn"]["auc"], ho["logreg_true_mechanics"]["auc"]
    assert ho["cnn"]["n"] >= 200 and ho["cnn"]["n_tts"] == ho["cnn"]["n_stemi"]
    assert 0.5 < cnn <= 1.0 and 0.5 < lr <= 1.0
    assert ho["auc_gap_cnn_minus_logreg"] == pytest.approx(cnn - lr, abs=1e-6)
    assert "NOT TRAINED ON PATIENTS" in card["trained_on"]
    # a second held-out set, when the card has one, is pooled with the first: the gap is then
    # judged on twice the clips (200 clips give an AUC SD of ~0.03, as large as the target)
    pooled = card["metrics"].get("held_out_pooled")
    if pooled is not None:
        second = card["metrics"]["held_out_second"]
        assert pooled["cnn"]["n"] == ho["cnn"]["n"] + second["cnn"]["n"]
        assert min(cnn, second["cnn"]["auc"]) <= pooled["cnn"]["auc"] + 0.02
        cnn, lr = pooled["cnn"]["auc"], pooled["logreg_true_mechanics"]["auc"]
        assert pooled["auc_gap_cnn_minus_logreg"] == pytest.approx(cnn - lr, abs=1e-3)


@pytest.mark.parametrize("key,case", target_cases("heldout_auc_gap", ["shipped_model"]))
def test_model_auc_gap_target(key, case, card_auc_gap, accuracy_record):
    """Held-out AUC of the CNN at most 0.03 below the true-mechanics regression's (issue 6 ended
    blocked on it)."""
    _, cnn, lr = card_auc_gap
    check_target(key, case, lr - cnn, accuracy_record, auc_cnn=cnn, auc_logreg_true_mechanics=lr)


def test_auxiliary_mechanics_loss_is_training_only():
    """``aux_weight``: the true mechanics enter the loss (the trained weights differ from a run
    without it, same seed) but the network saved is the plain two-arm net (same keys and
    shapes), and a cohort without true mechanics trains as before."""
    from ttsfast.model.train import Cohort, TrainConfig, _aux_target, train_model

    cfg_net = NetConfig(t=4, h=8, w=12, channels=(4, 8), strides=((1, 2, 2), (1, 1, 1)))
    rng = np.random.default_rng(0)
    n = 8
    s = rng.normal(size=(n, 1, 4, 8, 12)).astype(np.float16)
    t = rng.normal(size=(n, 2, 4, 8, 12)).astype(np.float16)
    y = np.array([0, 1] * (n // 2))
    feats = np.stack([t[:, 0].astype(np.float32).mean(axis=(1, 2, 3)), y + rng.normal(0, 0.1, n)], axis=1)
    coh = Cohort(s, t, y, [f"c{i}" for i in range(n)], features=feats, feature_names=["a", "b"])

    def run(w: float, c: Cohort) -> dict:
        net, _ = train_model(c, None, TrainConfig(epochs=2, batch_size=4, aux_weight=w, augment=False, threads=1),
                             net_config=cfg_net, progress=False)
        return net.state_dict()

    plain, aux = run(0.0, coh), run(1.0, coh)
    # the auxiliary head does not disturb the run's random stream: a vanishing weight is the plain run
    assert all(torch.equal(plain[k], v) for k, v in run(1e-30, coh).items())
    ref = TwoArmNet(cfg_net).state_dict()
    assert {k: v.shape for k, v in aux.items()} == {k: v.shape for k, v in ref.items()}
    assert any(not torch.equal(plain[k], aux[k]) for k in plain if plain[k].is_floating_point())
    no_feats = Cohort(s, t, y, coh.names)
    assert all(torch.equal(plain[k], v) for k, v in run(1.0, no_feats).items())
    head, z = _aux_target(TwoArmNet(cfg_net), coh, 0.5)
    assert head.in_features == 16 and head.out_features == 2 and z.shape == (n, 2)
    assert np.allclose(z.mean(axis=0), 0, atol=1e-5) and np.allclose(z.std(axis=0), 1, atol=1e-3)
