"""The cohort table against hand-computed values and scipy's definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ttsfast.errors import InputError
from ttsfast.stats import classification_metrics, get_dotted, roc_auc, study_table, table_markdown


def _rec(v):
    return {"mechanics": {"gls_pct": v}}


def test_study_table_means_sds_and_pvalues():
    rng = np.random.default_rng(0)
    tts = rng.normal(-12, 2, 40)
    stemi = rng.normal(-16, 2, 40)
    recs = [_rec(v) for v in tts] + [_rec(v) for v in stemi] + [_rec(None), {"mechanics": {}}]
    labels = ["TTS"] * 40 + ["STEMI"] * 40 + ["TTS", "STEMI"]
    (row,) = study_table(recs, labels, [("mechanics.gls_pct", "GLS", "%")])
    assert row.n_tts == 40 and row.n_stemi == 40  # missing values are left out, not zeros
    assert row.mean_tts == pytest.approx(tts.mean()) and row.sd_tts == pytest.approx(tts.std(ddof=1))
    assert row.mean_stemi == pytest.approx(stemi.mean())
    # Welch t by hand
    va, vb = tts.var(ddof=1) / 40, stemi.var(ddof=1) / 40
    t = (tts.mean() - stemi.mean()) / math.sqrt(va + vb)
    assert t > 5 and row.p_welch < 1e-6 and row.p_mannwhitney < 1e-6
    md = table_markdown([row])
    assert "| GLS | % |" in md and "<0.001" in md


def test_no_difference_is_not_significant():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 50)
    b = rng.normal(0, 1, 50)
    (row,) = study_table([_rec(v) for v in np.r_[a, b]], ["TTS"] * 50 + ["STEMI"] * 50,
                         [("mechanics.gls_pct", "GLS", "%")])
    assert row.p_welch > 0.05 and row.p_mannwhitney > 0.05


def test_too_few_values_give_nan_not_a_number():
    (row,) = study_table([_rec(1.0), _rec(2.0)], ["TTS", "STEMI"], [("mechanics.gls_pct", "GLS", "%")])
    assert math.isnan(row.p_welch) and math.isnan(row.sd_tts)


def test_auc_and_metrics_by_hand():
    y = [0, 0, 1, 1]
    assert roc_auc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    m = classification_metrics(y, [0.1, 0.6, 0.4, 0.8])
    assert m["accuracy"] == 0.5 and m["sensitivity"] == 0.5 and m["specificity"] == 0.5
    with pytest.raises(InputError):
        classification_metrics([], [])


def test_get_dotted():
    assert get_dotted({"a": {"b": 3}}, "a.b") == 3
    assert get_dotted({"a": None}, "a.b") is None
