"""What a report needs from a fit, recorded in the study when the suggestion is made
(:meth:`llmbo.study.Study.ask` calls this; reports read it without importing torch).

A report never refits a model: when a Bayesian proposal comes with its fitted surrogate,
the study stores

- for each suggested candidate, the model's predicted mean and 95 % interval in the
  objective's own units (``report.prediction.<candidate id>``), with the number of
  observations it was fitted on;
- a map of the candidate features the GP saw at the latest fit (``report.map.after``), and
  once per study the features before any training (``report.map.before``): the first
  :data:`MAP_DIMS` principal components of at most :data:`MAP_ROWS` rows (every observed
  and suggested row, the rest a seeded sample).

A 95 % interval fitted to outcomes raised to a power (``outcome_power``) is mapped back
through the inverse of that increasing map, so it holds the same probability; its mean is
the mapped predicted mean.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "MAP_AFTER",
    "MAP_BEFORE",
    "MAP_DIMS",
    "MAP_ROWS",
    "PREDICTION",
    "feature_map",
    "predictions",
]

PREDICTION = "report.prediction."
MAP_BEFORE = "report.map.before"
MAP_AFTER = "report.map.after"
#: Rows and principal components kept in a stored feature map.
MAP_ROWS = 2000
MAP_DIMS = 8
#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _unwarp(x: np.ndarray, values: np.ndarray, power: float) -> np.ndarray:
    """Inverse of :func:`llmbo.acquisition.warp_outcomes` fitted on ``values``."""
    if power == 1 or values.size < 2 or not values.max() > values.min():
        return x
    lo, hi = float(values.min()), float(values.max())
    return lo + (hi - lo) * np.clip(x, 0.0, None) ** (1.0 / power)


def predictions(
    fitted: Any,
    rows: Sequence[int],
    ids: Sequence[str],
    observed: np.ndarray,
    *,
    outcome_power: float,
    maximize: bool,
    label: str,
) -> dict[str, dict[str, Any]]:
    """``{attribute key: record}`` of the model's prediction for each suggested row.

    ``observed`` are the maximised values the model was fitted on (before the outcome
    power); the records are in the objective's units and direction.
    """
    import torch

    with torch.no_grad():
        x = fitted.features[torch.as_tensor(list(rows), dtype=torch.long)]
        posterior = fitted.model.posterior(x)
        mean = posterior.mean.reshape(-1).double().cpu().numpy()
        sd = posterior.variance.clamp_min(0).sqrt().reshape(-1).double().cpu().numpy()
    lower, upper = mean - Z95 * sd, mean + Z95 * sd
    mean, lower, upper = (_unwarp(v, observed, outcome_power) for v in (mean, lower, upper))
    if not maximize:  # the model saw negated values
        mean, lower, upper = -mean, -upper, -lower
    at = _now()
    return {
        PREDICTION + str(cid): {
            "mean": float(m),
            "lower": float(lo),
            "upper": float(hi),
            "n_train": int(observed.size),
            "surrogate": label,
            "at": at,
        }
        for cid, m, lo, hi in zip(ids, mean, lower, upper, strict=True)
    }


def feature_map(
    features: torch.Tensor,
    ids: Sequence[str],
    keep: Sequence[int],
    *,
    n_train: int,
    seed: int = 0,
) -> dict[str, Any]:
    """The first principal components of ``features`` (``N x d``) on at most
    :data:`MAP_ROWS` rows: ``keep`` (observed and suggested rows) and a seeded sample."""
    n = int(features.shape[0])
    keep_set = sorted({int(i) for i in keep if 0 <= int(i) < n})
    rest = np.setdiff1d(np.arange(n), keep_set)
    room = max(MAP_ROWS - len(keep_set), 0)
    if len(rest) > room:
        rest = np.sort(np.random.default_rng(seed).choice(rest, room, replace=False))
    rows = np.concatenate([np.asarray(keep_set, dtype=np.int64), rest]).astype(np.int64)
    import torch

    with torch.no_grad():
        x = features[torch.from_numpy(rows)].double().cpu().numpy()
    x = x - x.mean(axis=0, keepdims=True)
    x = x[:, np.isfinite(x).all(axis=0)]
    if x.shape[1] == 0:
        scores, explained = np.zeros((len(rows), 1)), np.zeros(1)
    else:
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        k = min(MAP_DIMS, len(s))
        scores = u[:, :k] * s[:k]
        total = float((s**2).sum())
        explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return {
        "ids": [str(ids[i]) for i in rows],
        "scores": np.round(scores, 5).tolist(),
        "explained": np.round(explained, 5).tolist(),
        "dims": int(features.shape[1]),
        "n_train": int(n_train),
        "at": _now(),
    }
