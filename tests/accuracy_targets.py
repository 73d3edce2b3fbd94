"""The accuracy targets of the test suite, in one table.

Each target is checked by a *target test* parametrized over its cases (presets, clips):
a case named in ``unmet`` is marked ``xfail(strict=True)``, so a target that starts being met
fails the run until this table is updated (remove the case from ``unmet``), and a regression
on a met case fails outright. The hard bounds that must hold today stay in the *guard* tests
beside them. Measured values go to ``accuracy.json`` (fixture ``accuracy_record`` in
conftest.py), not to stdout.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    limit: float  # a case meets the target when value <= limit
    unit: str
    unmet: frozenset[str] = frozenset()  # cases where the target is not met today

    def met(self, value: float) -> bool:
        return bool(value <= self.limit)


# Cases: presets "normal", "tts", "stemi_anterior"; a synthetic clip "<preset>-<seed>" with
# "-mirrored" for a mirrored display. Measured values: build/accuracy.json.
_TARGETS = (
    Target("cycle_es_frames", "end-systole within 1 frame of the truth, worst beat of a synthetic clip "
           "(whole-frame and sub-frame ES; test_cycle.py)", 1.0, "frames"),
    Target("true_flow_peak_displacement_px", "paper's peak displacement with the TRUE flow and the detected "
           "beat times, worst segment/phase (test_mechanics.py)", 0.1, "px",
           frozenset({"tts"})),
    Target("e2e_peak_displacement_px", "end to end, default tracker: peak displacement, worst segment/phase "
           "(test_mechanics.py)", 0.1, "px",
           frozenset({"normal", "tts", "stemi_anterior"})),
    Target("e2e_excursion_px", "end to end, default tracker: AV-plane excursion, worst segment "
           "(test_mechanics.py)", 0.5, "px"),
    Target("e2e_segment_strain_pts", "end to end, default tracker: peak segmental strain, worst segment "
           "(test_mechanics.py)", 1.5, "strain points",
           frozenset({"normal", "stemi_anterior"})),
    Target("e2e_gls_pts", "end to end, default tracker: GLS (test_mechanics.py)", 1.0, "strain points"),
    Target("e2e_velocity_rel", "end to end, default tracker: s' and e' relative error, worst wall "
           "(test_mechanics.py)", 0.10, "relative"),
    Target("auto_landmarks_px", "automatic landmarks on the estimated flow, worst of the three landmarks "
           "(grid px; test_landmarks.py)", 3.0, "px",
           frozenset({"tts", "stemi_anterior"})),
    Target("auto_landmarks_pipeline_px", "automatic landmarks through the real pipeline, worst of the three "
           "landmarks (original px; test_landmarks.py)", 3.0, "px",
           frozenset({"normal-1-mirrored", "tts-0", "tts-1-mirrored", "stemi_anterior-0"})),
    Target("heldout_auc_gap", "held-out AUC of the shipped CNN below the logistic regression on the true "
           "mechanics (pooled held-out sets when the card has two; test_model.py)", 0.03, "AUC",
           frozenset({"shipped_model"})),
)

TARGETS: dict[str, Target] = {t.key: t for t in _TARGETS}


def target_cases(key: str, cases: Iterable[str]) -> list:
    """``pytest.param(key, case)`` for each case of target ``key`` (id ``<key>-<case>``), marked
    ``xfail(strict=True)`` where the table says the target is not met today. A case in the
    table's ``unmet`` that is not among ``cases`` is an error (a typo would hide a target)."""
    t = TARGETS[key]
    cases = list(cases)
    stray = t.unmet - set(cases)
    if stray:
        raise ValueError(f"accuracy target {key!r}: unmet cases {sorted(stray)} are not among {cases}")
    out = []
    for c in cases:
        marks = ()
        if c in t.unmet:
            marks = pytest.mark.xfail(strict=True, reason=f"{key} <= {t.limit:g} {t.unit} not met today "
                                      "(tests/accuracy_targets.py)")
        out.append(pytest.param(key, c, marks=marks, id=f"{key}-{c}"))
    return out


def check_target(key: str, case: str, value: float, record, **extra) -> None:
    """Record ``value`` (``record`` is the ``accuracy_record`` fixture; ``extra``: details kept
    beside it) and assert that it meets the target."""
    t = TARGETS[key]
    value = float(value)
    record(key, case, value, **extra)
    assert t.met(value), f"{key} [{case}]: {value:.4g} {t.unit} > target {t.limit:g} ({t.what})"
