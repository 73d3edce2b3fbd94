"""ONNX Runtime inference: SHA-256 check, session cache, threads, batch API, .pt models,
the shipped default model."""
from __future__ import annotations

import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: E402

# export/ is a repository tool, not part of the installed package: make it importable without
# shadowing the installed ttsfast (appended, not prepended).
_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.append(_REPO)

from ttsfast.errors import InputError, ModelError  # noqa: E402
from ttsfast.model import runtime  # noqa: E402
from ttsfast.model.card import NOT_FOR_PATIENTS, load_card, sha256_file  # noqa: E402
from ttsfast.model.net import ExportWrapper, TwoArmNet, save_checkpoint  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from export.export_onnx import export_checkpoint

    torch.manual_seed(2)
    net = TwoArmNet()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.1, 0.3)
    with torch.no_grad():
        net.head.weight.normal_(0, 3.0)
    d = tmp_path_factory.mktemp("rt")
    save_checkpoint(net, d / "ckpt.pt")
    export_checkpoint(d / "ckpt.pt", d, triton=False)
    return net.eval(), d


def _inputs(n, seed=0):
    from export.export_onnx import parity_inputs

    return parity_inputs(TwoArmNet(), batch=n, seed=seed)


def test_predict_matches_pytorch_and_batch_equals_single(model_dir):
    net, d = model_dir
    s, f = _inputs(5)
    out = runtime.predict_batch(s, f, model=d / "model.onnx", with_cam=True, batch_size=2)
    with torch.no_grad():
        ref = ExportWrapper(net).eval()(torch.from_numpy(s), torch.from_numpy(f))
    np.testing.assert_allclose(out.logits, ref[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(out.cam_temporal, ref[5].numpy(), atol=1e-4)
    assert out.p_tts.shape == (5,) and np.allclose(out.probs.sum(axis=1), 1, atol=1e-5)
    assert np.ptp(out.logits[:, 1]) > 1e-3  # different clips -> different answers
    for i in (0, 3):
        one = runtime.predict(s[i:i + 1], f[i:i + 1], model=d / "model.onnx")
        np.testing.assert_allclose(one.probs[0], out.probs[i], atol=1e-5)
    one = runtime.predict(s[0], f[0], model=d / "model.onnx")  # batch axis may be omitted
    np.testing.assert_allclose(one.probs[0], out.probs[0], atol=1e-5)
    # a weights-only .pt checkpoint plugs in the same way
    pt = runtime.predict_batch(s, f, model=d / "ckpt.pt", with_cam=True)
    np.testing.assert_allclose(pt.probs, out.probs, atol=1e-5)
    np.testing.assert_allclose(pt.cam_spatial, out.cam_spatial, atol=1e-4)
    # the Grad-CAM hooks path loads the same checkpoint (cached); ONNX files are refused there
    tn = runtime.load_torch_model(d / "ckpt.pt")
    assert tn is runtime.load_torch_model(d / "ckpt.pt") and not tn.training
    with pytest.raises(ModelError, match="CAM fast path"):
        runtime.load_torch_model(d / "model.onnx")


def test_session_cache_and_threads(model_dir):
    _, d = model_dir
    runtime.clear_cache()
    a = runtime.get_session(d / "model.onnx", providers="cpu", intra_op_threads=1)
    b = runtime.get_session(str(d / "model.onnx"), providers="cpu", intra_op_threads=1)
    c = runtime.get_session(d / "model.onnx", providers="cpu", intra_op_threads=2)
    assert a is b and a is not c
    assert a.get_providers() == ["CPUExecutionProvider"]
    # idle pool threads sleep: ORT's default would spin them after each run, taking a core from
    # the flow of a live stream (see the session options in runtime._new_session)
    opts = c.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    # many threads at once: same answers as one thread, and one session per key
    s, f = _inputs(6, seed=3)
    want = runtime.predict_batch(s, f, model=d / "model.onnx", providers="cpu").probs
    runtime.clear_cache()

    def job(i):
        return runtime.predict(s[i % 6:i % 6 + 1], f[i % 6:i % 6 + 1], model=d / "model.onnx",
                               providers="cpu", intra_op_threads=1).probs[0]

    with ThreadPoolExecutor(max_workers=6) as ex:
        got = list(ex.map(job, range(18)))
    for i, g in enumerate(got):
        np.testing.assert_allclose(g, want[i % 6], atol=1e-5)
    keys = [k for k in runtime._CACHE if k[0] == "onnx"]
    assert len(keys) == 1


def test_sha_mismatch_and_missing_card(model_dir, tmp_path):
    _, d = model_dir
    shutil.copy(d / "model.onnx", tmp_path / "model.onnx")
    shutil.copy(d / "model_card.json", tmp_path / "model_card.json")
    s, f = _inputs(1)
    runtime.predict(s, f, model=tmp_path / "model.onnx")  # intact: loads
    data = bytearray((tmp_path / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "model.onnx").write_bytes(bytes(data))  # new mtime/size key -> re-verified
    import os
    os.utime(tmp_path / "model.onnx", ns=(1, 1))
    with pytest.raises(ModelError, match="SHA-256"):
        runtime.predict(s, f, model=tmp_path / "model.onnx")
    (tmp_path / "model_card.json").unlink()
    with pytest.raises(ModelError, match="card"):
        runtime.get_session(tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="not found"):
        runtime.predict(s, f, model=tmp_path / "nope.onnx")
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model file type"):
        runtime.predict(s, f, model=tmp_path / "m.bin")


def test_own_onnx_with_card_only(model_dir, tmp_path):
    from export.export_onnx import card_only

    _, d = model_dir
    own = tmp_path / "mine.onnx"
    shutil.copy(d / "model.onnx", own)
    with pytest.raises(ModelError):
        runtime.get_session(own)  # no card yet
    card = card_only(own)
    assert card.name == "mine.card.json" and json.loads(card.read_text())["onnx_sha256"] == sha256_file(own)
    s, f = _inputs(2)
    out = runtime.predict_batch(s, f, model=own)
    assert out.probs.shape == (2, 2)


def test_bad_inputs_raise_input_error(model_dir):
    _, d = model_dir
    s, f = _inputs(2)
    with pytest.raises(InputError):
        runtime.predict_batch(s, f[:1], model=d / "model.onnx")
    with pytest.raises(InputError):
        runtime.predict_batch(s[:, :, :16], f[:, :, :16], model=d / "model.onnx")
    bad = s.copy()
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(InputError):
        runtime.predict_batch(bad, f, model=d / "model.onnx")
    with pytest.raises(InputError, match="one clip"):
        runtime.predict(s, f, model=d / "model.onnx")


def test_providers():
    import onnxruntime as ort

    assert runtime.resolve_providers("cpu") == (("CPUExecutionProvider", ()),)
    auto = runtime.resolve_providers("auto")
    assert auto[-1][0] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert auto[0] == ("CUDAExecutionProvider", (("cudnn_conv_algo_search", "HEURISTIC"),))
    else:
        assert len(auto) == 1
        with pytest.raises(ModelError, match="CUDA"):
            runtime.resolve_providers("cuda")


def test_shipped_default_model():
    card = load_card(runtime.DEFAULT_CARD)
    assert card["WARNING"] == NOT_FOR_PATIENTS
    assert card["onnx_sha256"] == sha256_file(runtime.DEFAULT_MODEL)
    assert card["training"] and card["metrics"]
    s, f = _inputs(2)
    out = runtime.predict_batch(s, f)
    assert out.probs.shape == (2, 2) and np.isfinite(out.probs).all()


def test_shipped_torch_checkpoint_is_the_onnx_model():
    """model=None on the Grad-CAM hooks path loads ttsfast/data/model.pt: the same weights as the
    shipped ONNX model (same probabilities)."""
    net = runtime.load_torch_model(None)
    assert net is runtime.load_torch_model(runtime.DEFAULT_TORCH_MODEL) and not net.training
    s, f = _inputs(2)
    a = runtime.predict_batch(s, f).probs
    b = runtime.predict_batch(s, f, model=runtime.DEFAULT_TORCH_MODEL).probs
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_shipped_model_on_fresh_synthetic_clips():
    """The shipped demo model on synthetic clips it never saw (other seeds, the synth's default
    50 frames/s and 3 beats, unlike the 30 frames/s training clips), through the whole input
    pipeline. The TTS and STEMI presets overlap as real cohorts do: held-out accuracy at
    training time was 0.71 (AUC 0.79, logistic regression on the true mechanics 0.85) on 80
    clips. Here: better than chance on 16 clips (>= 10 right; chance gives >= 10 of 16 in 23 %
    of draws, the card's accuracy in ~85 %) and TTS clips score higher on average."""
    import ttsfast.synth as synth
    from ttsfast.model.train import clip_to_inputs

    p_tts, is_tts = [], []
    for i in range(16):
        preset = ("stemi_anterior", "tts")[i % 2]
        clip, _ = synth.generate(preset, seed=424242 + i)
        s, f, _ = clip_to_inputs(clip)
        p_tts.append(float(runtime.predict(s, f).p_tts[0]))
        is_tts.append(preset == "tts")
    p, y = np.array(p_tts), np.array(is_tts)
    correct = int(((p >= 0.5) == y).sum())
    assert correct >= 10, f"only {correct}/16 fresh synthetic clips classified correctly: {np.round(p, 2)}"
    assert p[y].mean() > p[~y].mean() + 0.05, (p[y].mean(), p[~y].mean())
