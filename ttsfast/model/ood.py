"""Is a clip like the model's training data? A density model of the network's pooled features.

The two-arm network ends, per arm, in a last convolution whose activations ``A [C, t, h, w]``
are globally average-pooled into the features its linear head reads. This module models
the distribution of those pooled features on clips like the training clips, per arm, and
scores a new clip by how far its features lie from that distribution (the feature-space
Mahalanobis detector of Lee et al., NeurIPS 2018, on the penultimate layer).

Method (``FEATURE_STATS_VERSION`` 1)
------------------------------------
features
    per arm, the global mean over ``(t, h, w)`` of each channel of the last-conv activation:
    exactly the head's input, ``[C]`` (C = 64 for the shipped network).
density model, per arm
    features are standardised per channel (mean ``mu``, scale ``s`` = channel SD, floored at
    :data:`SCALE_FLOOR_REL` times the RMS of all channel SDs, so that channels that never
    fire on the training data do not divide by ~0); on the standardised features a
    probabilistic-PCA covariance: the top ``k`` principal directions ``U [k, C]`` with their
    variances ``lam [k]``, and one isotropic variance ``sigma2`` (the mean of the remaining
    eigenvalues, floored) for everything orthogonal to them::

        Sigma = U' diag(lam) U + sigma2 (I - U' U)
        d2(x) = sum_j (U_j z)^2 / lam_j + (|z|^2 - sum_j (U_j z)^2) / sigma2,  z = (x - mu) / s

score
    per arm ``r = sqrt(d2 / d2_ref)`` with ``d2_ref`` the median ``d2`` of the fit clips
    (so ``r ~ 1`` for a typical training-like clip in either arm); the clip's score is the
    larger of the two arms' ``r`` (a clip is unusual when either arm sees something unusual).
threshold
    the 99th percentile of the scores of training-like clips that the model being scored did
    not see: out-of-fold scores of the fit clips (``n_folds``-fold: each fold scored by a
    density model fitted on the other folds), so that the fit set's in-sample optimism does
    not make the threshold too tight. ``in_distribution = score <= threshold``. The expected
    false-flag rate on training-like clips is then about 1 %; check it on a separate held-out
    set (``heldout_flag_rate`` in the card).

The statistics live in the model card under :data:`CARD_KEY` (see :func:`stats_to_card` /
:func:`stats_from_card`); ``python -m export.feature_stats`` computes them for any ONNX model.
Everything here is plain numpy on arrays; nothing is global but constants.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import InputError, ModelError

#: Key of the statistics in the model card.
CARD_KEY = "feature_stats"
#: Version of the method above (bump when features, model or score change meaning).
FEATURE_STATS_VERSION = 1
#: The two arms, in the order of the network's pooled features.
ARMS = ("spatial", "temporal")
#: Ways to pool an arm's activations (see :func:`pool_features`).
POOLINGS = ("mean", "mean+logstd")
#: The pooling of this method version (what ``predict_batch(with_features=True)`` returns).
FEATURE_POOLING = "mean"
#: Added to the activation SD before its log (activations are ReLU outputs of order 0.01..1).
LOGSTD_EPS = 1e-3
#: Default number of principal components per arm.
DEFAULT_K = 8
#: Channel-scale floor, relative to the RMS of all channel SDs of that arm.
SCALE_FLOOR_REL = 0.05
#: Residual-variance floor, relative to the largest principal variance.
RESID_FLOOR_REL = 1e-3
#: Default quantile of training-like scores that sets the threshold.
DEFAULT_QUANTILE = 0.99
#: Significant digits of the floats stored in the card.
CARD_DIGITS = 6


# ----------------------------------------------------------------------------- features
def pool_features(act: np.ndarray, pooling: str | None = None) -> np.ndarray:
    """Pool one arm's last-conv activations over ``t, h, w`` into a feature vector per clip.

    Parameters
    ----------
    act : np.ndarray
        ``[B, C, t, h, w]`` (or ``[C, t, h, w]`` for one clip) activations of one arm.
    pooling : str, optional
        ``"mean"``: the per-channel mean (the linear head's input), ``[B, C]``;
        ``"mean+logstd"``: the means, then ``log(SD + LOGSTD_EPS)`` per channel, ``[B, 2C]``.
        None: :data:`FEATURE_POOLING`.

    Returns
    -------
    np.ndarray
        float64 ``[B, C]`` or ``[B, 2C]``.
    """
    pooling = FEATURE_POOLING if pooling is None else pooling
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    a = np.asarray(act)
    if a.ndim == 4:
        a = a[None]
    if a.ndim != 5:
        raise InputError(f"activations must be [B, C, t, h, w]; got shape {a.shape}")
    r = a.reshape(a.shape[0], a.shape[1], -1)
    mean = r.mean(axis=2, dtype=np.float64)
    if pooling == "mean":
        return mean
    return np.concatenate([mean, np.log(r.std(axis=2, dtype=np.float64) + LOGSTD_EPS)], axis=1)


def _as_2d(features: np.ndarray, name: str = "features") -> np.ndarray:
    """``[C]`` or ``[N, C]`` finite features -> float64 ``[N, C]``."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"{name} must be [N, C] (or [C]); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{name} contain NaN or infinite values")
    return x


# ----------------------------------------------------------------------------- density model
def fit_arm(features: np.ndarray, k: int = DEFAULT_K) -> dict[str, Any]:
    """Fit the per-arm density model (standardisation + probabilistic-PCA covariance).

    Parameters
    ----------
    features : np.ndarray
        ``[N, C]`` pooled features of N training-like clips (N >= 3).
    k : int
        Principal components kept (clipped to ``min(k, N - 2, C - 1)``, at least 1).

    Returns
    -------
    dict
        ``mean [C]``, ``scale [C]``, ``components [k, C]`` (orthonormal rows),
        ``variances [k]`` (descending), ``residual_variance`` (float), ``dim`` (C), ``k``;
        ``d2_ref`` is added by :func:`fit_stats` (1.0 here).
    """
    x = _as_2d(features)
    n, c = x.shape
    if n < 3:
        raise InputError(f"fitting feature statistics needs at least 3 clips, got {n}")
    if c < 2:
        raise InputError(f"fitting feature statistics needs at least 2 feature channels, got {c}")
    k = int(max(1, min(int(k), n - 2, c - 1)))
    mu = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1)
    rms = float(np.sqrt(np.mean(sd ** 2)))
    scale = np.maximum(sd, SCALE_FLOOR_REL * rms if rms > 0 else 1.0)
    z = (x - mu) / scale
    # eigen-decomposition of the sample covariance through the SVD of the centred data
    _, sv, vt = np.linalg.svd(z, full_matrices=False)
    eig = np.zeros(c)
    eig[:len(sv)] = sv ** 2 / (n - 1)
    lam = eig[:k]
    resid = float(eig[k:].sum() / (c - k))
    floor = RESID_FLOOR_REL * float(lam[0]) if lam[0] > 0 else 1.0
    resid = max(resid, floor)
    lam = np.maximum(lam, resid)
    return {"dim": c, "k": k, "mean": mu, "scale": scale, "components": vt[:k].copy(),
            "variances": lam, "residual_variance": resid, "d2_ref": 1.0}


def arm_d2(model: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of features under one arm's density model.

    Parameters
    ----------
    model : mapping
        From :func:`fit_arm` (or read from a card).
    features : np.ndarray
        ``[N, C]`` or ``[C]``.

    Returns
    -------
    np.ndarray
        float64 ``[N]``: ``d2`` (about ``C`` on average for Gaussian data the model describes).
    """
    x = _as_2d(features)
    mu = np.asarray(model["mean"], np.float64)
    if x.shape[1] != mu.shape[0]:
        raise InputError(f"features have {x.shape[1]} channels; the statistics were fitted on {mu.shape[0]}")
    z = (x - mu) / np.asarray(model["scale"], np.float64)
    u = np.asarray(model["components"], np.float64).reshape(-1, mu.shape[0])
    proj = z @ u.T
    in_sub = (proj ** 2 / np.asarray(model["variances"], np.float64)).sum(axis=1)
    resid = np.maximum((z ** 2).sum(axis=1) - (proj ** 2).sum(axis=1), 0.0)
    return in_sub + resid / float(model["residual_variance"])


def arm_ratio(model: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """Per-arm normalised distance ``sqrt(d2 / d2_ref)``, float64 ``[N]`` (~1 when typical)."""
    return np.sqrt(arm_d2(model, features) / float(model.get("d2_ref", 1.0)))


def combine_scores(ratios: Mapping[str, np.ndarray]) -> np.ndarray:
    """The clip score from the arms' normalised distances: their maximum, float64 ``[N]``."""
    return np.max(np.stack([np.asarray(v, np.float64) for v in ratios.values()]), axis=0)


def score_features(stats: Mapping[str, Any],
                   features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score clips under fitted statistics.

    Parameters
    ----------
    stats : mapping
        From :func:`fit_stats` or :func:`stats_from_card` (needs ``arms``).
    features : mapping
        ``{"spatial": [N, C], "temporal": [N, C]}`` pooled features.

    Returns
    -------
    score : np.ndarray
        float64 ``[N]``, the larger of the arms' normalised distances.
    per_arm : dict
        ``{arm: [N]}`` normalised distances ``sqrt(d2 / d2_ref)``.
    """
    per_arm = {a: arm_ratio(stats["arms"][a], features[a]) for a in ARMS}
    return combine_scores(per_arm), per_arm


def _oof_scores(features: Mapping[str, np.ndarray], k: int, n_folds: int, seed: int) -> np.ndarray:
    """Out-of-fold scores ``[N]``: each fold scored by statistics fitted on the other folds."""
    n = len(features[ARMS[0]])
    folds = np.random.default_rng(seed).permutation(n) % n_folds
    out = np.empty(n)
    for f in range(n_folds):
        tr, va = folds != f, folds == f
        st = _fit_arms({a: np.asarray(features[a])[tr] for a in ARMS}, k)
        out[va] = score_features(st, {a: np.asarray(features[a])[va] for a in ARMS})[0]
    return out


def _fit_arms(features: Mapping[str, np.ndarray], k: int) -> dict[str, Any]:
    """Fit both arms and set each arm's ``d2_ref`` to the median in-sample ``d2``."""
    arms = {}
    for a in ARMS:
        m = fit_arm(features[a], k)
        m["d2_ref"] = float(np.median(arm_d2(m, features[a])))
        arms[a] = m
    return {"arms": arms}


def fit_stats(features: Mapping[str, np.ndarray], k: int = DEFAULT_K, quantile: float = DEFAULT_QUANTILE,
              n_folds: int = 5, seed: int = 0, digits: int | None = CARD_DIGITS) -> dict[str, Any]:
    """Fit both arms' density models and the threshold.

    Parameters
    ----------
    features : mapping
        ``{"spatial": [N, C], "temporal": [N, C]}`` pooled features of N training-like clips
        (N >= 3 * ``n_folds``).
    k : int
        Principal components per arm.
    quantile : float
        Quantile of the out-of-fold scores that becomes the threshold (0.5..1).
    n_folds : int
        Folds for the out-of-fold scores (>= 2).
    seed : int
        Seed of the fold assignment.
    digits : int or None
        Significant digits the stored floats are rounded to (as in the card) before
        ``d2_ref`` and the threshold are computed, so that the card scores exactly what was
        fitted; None: no rounding.

    Returns
    -------
    dict
        ``{"version", "arms": {arm: model}, "threshold", "quantile", "n_fit", "n_folds",
        "fit_score_quantiles"}`` with numpy arrays inside (see :func:`stats_to_card`).
    """
    feats = {a: _as_2d(features[a], f"{a} features") for a in ARMS}
    n = len(feats[ARMS[0]])
    if any(len(v) != n for v in feats.values()):
        raise InputError("both arms need features of the same clips")
    if not 0.5 <= float(quantile) <= 1.0:
        raise InputError(f"quantile must be in [0.5, 1], got {quantile}")
    n_folds = int(n_folds)
    if n_folds < 2 or n < 3 * n_folds:
        raise InputError(f"fitting feature statistics with {n_folds} folds needs at least {3 * max(n_folds, 2)} "
                         f"clips, got {n}")
    oof = _oof_scores(feats, k, n_folds, seed)
    stats = _fit_arms(feats, k)
    if digits is not None:
        stats = _round_stats(stats, digits)
        for a in ARMS:
            stats["arms"][a]["d2_ref"] = 1.0
            stats["arms"][a]["d2_ref"] = _sig(float(np.median(arm_d2(stats["arms"][a], feats[a]))), digits)
    thr = float(np.quantile(oof, quantile))
    stats.update(version=FEATURE_STATS_VERSION, pooling=FEATURE_POOLING, threshold=_sig(thr, digits) if digits else thr,
                 quantile=float(quantile), n_fit=int(n), n_folds=n_folds,
                 fit_score_quantiles={str(q): round(float(np.quantile(oof, q)), 4) for q in (0.5, 0.9, 0.95, 0.99)})
    return stats


# ----------------------------------------------------------------------------- card I/O
def _sig(v: float, digits: int) -> float:
    return float(f"{float(v):.{int(digits)}g}")


def _round_arr(a: Any, digits: int) -> np.ndarray:
    x = np.asarray(a, np.float64)
    return np.vectorize(lambda v: _sig(v, digits), otypes=[np.float64])(x) if x.size else x


def _round_stats(stats: Mapping[str, Any], digits: int) -> dict[str, Any]:
    out = {k: v for k, v in stats.items() if k != "arms"}
    out["arms"] = {}
    for a, m in stats["arms"].items():
        mm = dict(m)
        for key in ("mean", "scale", "components", "variances"):
            mm[key] = _round_arr(m[key], digits)
        mm["residual_variance"] = _sig(m["residual_variance"], digits)
        out["arms"][a] = mm
    return out


def stats_to_card(stats: Mapping[str, Any], **info: Any) -> dict[str, Any]:
    """JSON-ready dict for ``card[CARD_KEY]``: arrays as lists, plus ``info`` (e.g. ``fit_on``,
    ``heldout_flag_rate``)."""
    out: dict[str, Any] = {"version": int(stats.get("version", FEATURE_STATS_VERSION)),
                           "method": "per arm: channel means of the last-conv activation (the head's input), "
                                     "standardised; probabilistic-PCA covariance (top k components + isotropic "
                                     "residual); r = sqrt(d2 / d2_ref); score = max over arms of r; "
                                     "in_distribution = score <= threshold (the quantile of out-of-fold scores "
                                     "of the fit clips); see ttsfast.model.ood",
                           "pooling": str(stats.get("pooling", FEATURE_POOLING))}
    out["arms"] = {}
    for a, m in stats["arms"].items():
        out["arms"][a] = {"dim": int(m["dim"]), "k": int(m["k"]),
                          "d2_ref": float(m["d2_ref"]), "residual_variance": float(m["residual_variance"]),
                          "variances": np.asarray(m["variances"], float).tolist(),
                          "mean": np.asarray(m["mean"], float).tolist(),
                          "scale": np.asarray(m["scale"], float).tolist(),
                          "components": np.asarray(m["components"], float).tolist()}
    for key in ("threshold", "quantile", "n_fit", "n_folds", "fit_score_quantiles"):
        if key in stats:
            out[key] = stats[key]
    out.update(info)
    return out


def stats_from_card(card: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The feature statistics of a model card as arrays, or None when the card has none.

    Raises
    ------
    ModelError
        The card has statistics of another version or malformed ones.
    """
    if not card or CARD_KEY not in card or card[CARD_KEY] is None:
        return None
    fs = card[CARD_KEY]
    try:
        if int(fs.get("version", -1)) != FEATURE_STATS_VERSION:
            raise ModelError(f"model card feature_stats version {fs.get('version')!r} is not supported "
                             f"(this ttsfast reads version {FEATURE_STATS_VERSION}); recompute them with "
                             "python -m export.feature_stats")
        arms = {}
        for a in ARMS:
            m = fs["arms"][a]
            c = int(m["dim"])
            comps = np.asarray(m["components"], np.float64).reshape(-1, c)
            model = {"dim": c, "k": comps.shape[0], "mean": np.asarray(m["mean"], np.float64),
                     "scale": np.asarray(m["scale"], np.float64), "components": comps,
                     "variances": np.asarray(m["variances"], np.float64),
                     "residual_variance": float(m["residual_variance"]), "d2_ref": float(m["d2_ref"])}
            if model["mean"].shape != (c,) or model["scale"].shape != (c,) or \
                    model["variances"].shape != (comps.shape[0],) or not (model["scale"] > 0).all() or \
                    not (model["variances"] > 0).all() or model["residual_variance"] <= 0 or model["d2_ref"] <= 0:
                raise ValueError(f"inconsistent statistics for the {a} arm")
            arms[a] = model
        thr = float(fs["threshold"])
        if fs.get("pooling", FEATURE_POOLING) != FEATURE_POOLING:
            raise ModelError(f"model card feature_stats use pooling {fs.get('pooling')!r}; this ttsfast pools "
                             f"{FEATURE_POOLING!r}: recompute them with python -m export.feature_stats")
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model card feature_stats are malformed ({exc}); recompute them with "
                         "python -m export.feature_stats") from exc
    return {**{k: v for k, v in fs.items() if k != "arms"}, "arms": arms, "threshold": thr}


# ----------------------------------------------------------------------------- one clip
#: Warning that analyze() adds when a clip is out of distribution ({score}, {threshold}, {trained_on}).
OOD_WARNING = ("this clip is unlike the data the model was trained on (out-of-distribution score "
               "{score:.2f} > threshold {threshold:.2f}; trained on: {trained_on}); p_tts and the saliency "
               "are not reliable for it")


def in_distribution(features_spatial: np.ndarray, features_temporal: np.ndarray,
                    card: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Is one clip like the model's training data?

    Parameters
    ----------
    features_spatial, features_temporal : np.ndarray
        Pooled features of one clip, ``[C]`` or ``[1, C]`` (``ModelOutput.features_spatial[0]``
        from ``predict(..., with_features=True)``).
    card : mapping or None
        The model card (``ttsfast.model.runtime.model_card(model)``); None or a card without
        :data:`CARD_KEY` gives None.

    Returns
    -------
    dict or None
        ``{"score": float, "threshold": float, "in_distribution": bool,
        "per_arm": {"spatial": float, "temporal": float}, "method": str}``, or None when the
        card carries no statistics (e.g. a user's model exported without them).

    Raises
    ------
    ModelError
        Malformed statistics in the card.
    InputError
        Features of the wrong size or not finite.
    """
    stats = stats_from_card(card)
    if stats is None:
        return None
    fs, ft = _as_2d(features_spatial, "spatial features"), _as_2d(features_temporal, "temporal features")
    if fs.shape[0] != 1 or ft.shape[0] != 1:
        raise InputError(f"in_distribution scores one clip; got {fs.shape[0]} and {ft.shape[0]} rows")
    score, per_arm = score_features(stats, {"spatial": fs, "temporal": ft})
    s = float(score[0])
    thr = float(stats["threshold"])
    return {"score": round(s, 4), "threshold": round(thr, 4), "in_distribution": bool(s <= thr),
            "per_arm": {a: round(float(v[0]), 4) for a, v in per_arm.items()},
            "method": f"feature_stats v{stats.get('version')}: max over arms of the normalised Mahalanobis "
                      "distance of the pooled last-conv features"}


def ood_warning(result: Mapping[str, Any] | None, card: Mapping[str, Any] | None = None) -> str | None:
    """The warning text for an :func:`in_distribution` result, or None when in distribution
    (or not scored)."""
    if not result or result.get("in_distribution", True):
        return None
    trained_on = str((card or {}).get("trained_on") or "see the model card")
    return OOD_WARNING.format(score=result["score"], threshold=result["threshold"], trained_on=trained_on)


__all__ = ["CARD_KEY", "FEATURE_STATS_VERSION", "ARMS", "DEFAULT_K", "DEFAULT_QUANTILE", "OOD_WARNING",
           "pool_features", "fit_arm", "arm_d2", "arm_ratio", "combine_scores", "score_features", "fit_stats",
           "stats_to_card", "stats_from_card", "in_distribution", "ood_warning"]
