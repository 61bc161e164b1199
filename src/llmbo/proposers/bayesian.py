"""The Bayesian proposer: a surrogate fitted to the observations, then an acquisition.

Below ``min_observations`` measurements it draws at random. A fit that fails numerically
(one of :data:`llmbo.surrogates.numerics.NUMERICAL_ERRORS`) falls back to the surrogate's
own :meth:`~llmbo.surrogates.base.Surrogate.fallback` (a GP on fixed features), then to a
random choice; so does an acquisition that fails on the fitted model. The proposal's
``info["fallback"]`` names what was used (``None``: the requested model worked).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from llmbo.acquisition import AcquisitionConfig, select_candidates, warp_outcomes
from llmbo.errors import InputError, LlmboError, StudyError
from llmbo.proposers.base import PROPOSERS, Observations, Proposal, Proposer
from llmbo.space import CandidateSpace
from llmbo.surrogates.base import FittedSurrogate, Surrogate
from llmbo.surrogates.config import SurrogateConfig, surrogate_config_from_dict
from llmbo.surrogates.factory import make_surrogate
from llmbo.surrogates.numerics import NUMERICAL_ERRORS

logger = logging.getLogger("llmbo.proposers.bayesian")

__all__ = ["BayesianProposer"]


def _rng_devices() -> list[Any]:
    return [torch.cuda.current_device()] if torch.cuda.is_available() else []


class BayesianProposer(Proposer):
    """Fit ``surrogate`` by its own training rule, then maximise ``acquisition``.

    Args:
        surrogate: A :class:`~llmbo.surrogates.config.SurrogateConfig` (built lazily: loading a transformer takes
            seconds) or a prepared :class:`Surrogate` instance (not rebuildable from a
            stored study: pass it again).
        acquisition: Acquisition settings.
        min_observations: Below this many observations, proposals are random.
        progress: Show progress bars while preparing the surrogate.
    """

    name = "bayesian"
    runtime_settings = frozenset({"surrogate.encoder.device"})

    def __init__(
        self,
        surrogate: SurrogateConfig | Surrogate,
        acquisition: AcquisitionConfig | None = None,
        *,
        min_observations: int = 2,
        progress: bool = False,
    ) -> None:
        if isinstance(min_observations, bool) or not isinstance(min_observations, int | np.integer):
            raise InputError(f"min_observations must be an integer >= 1, got {min_observations!r}.")
        if min_observations < 1:
            raise InputError(f"min_observations must be an integer >= 1, got {min_observations!r}.")
        self.spec = surrogate if isinstance(surrogate, SurrogateConfig) else None
        self._surrogate = surrogate if isinstance(surrogate, Surrogate) else None
        self.acquisition = acquisition or AcquisitionConfig()
        self.min_observations = int(min_observations)
        self.progress = progress
        #: Put the surrogate's features before training in the next proposal's info
        #: (``"input_features"``), for reports (set by the study that needs them).
        self.want_input_features = False
        self._fallback: tuple[str, Surrogate | None] | None = None

    @property
    def surrogate(self) -> Surrogate:
        """The surrogate (built on first use)."""
        if self._surrogate is None:
            assert self.spec is not None
            self._surrogate = make_surrogate(self.spec)
        return self._surrogate

    @property
    def fallback_surrogate(self) -> Surrogate | None:
        """The fallback built after a failed fit (``None`` before one, or if there is none)."""
        return self._fallback[1] if self._fallback is not None else None

    @property
    def label(self) -> str:
        return self.spec.name if self.spec else self.surrogate.name

    def config(self) -> dict[str, Any]:
        surrogate = self.spec.to_dict() if self.spec else {"instance": self.surrogate.name}
        return {
            "name": self.name,
            "surrogate": surrogate,
            "acquisition": self.acquisition.to_dict(),
            "min_observations": self.min_observations,
        }

    def prepare(self, space: CandidateSpace, *, progress: bool = False) -> None:
        self.surrogate.prepare(space, progress=progress)

    # ------------------------------------------------------------------ propose
    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        start = time.perf_counter()
        fallback: str | None = None
        fit = len(observed) >= self.min_observations
        if fit:
            # Build and prepare the surrogate before seeding: constructing it draws random
            # numbers (initial weights), and whether that happens inside the seeded block
            # must not depend on whether this process built it earlier.
            with torch.random.fork_rng(devices=_rng_devices()):
                self.surrogate.prepare(space, progress=self.progress)
        inputs = None
        if fit and self.want_input_features:
            with torch.random.fork_rng(devices=_rng_devices()):
                inputs = self.surrogate.input_features()
        with torch.random.fork_rng(devices=_rng_devices()):
            torch.manual_seed(seed)
            fitted = None
            y = warp_outcomes(observed.values, self.acquisition.outcome_power)
            if fit:
                fitted, fallback = self._fit(space, observed.index, y)
            pending = torch.from_numpy(observed.pending) if len(observed.pending) else None
            available = torch.from_numpy(observed.available)

            def select(model: FittedSurrogate | None) -> torch.Tensor:
                return select_candidates(
                    model,
                    available,
                    n,
                    best_f=float(y.max()) if len(y) else None,
                    pending=pending,
                    config=self.acquisition,
                    seed=seed,
                )

            try:
                chosen = select(fitted)
            except NUMERICAL_ERRORS as exc:
                if fitted is None:
                    raise
                logger.warning(
                    "Acquisition on the %s model failed (%s: %s); choosing at random this time.",
                    fallback or self.label,
                    type(exc).__name__,
                    exc,
                )
                fallback, fitted = "random", None
                chosen = select(None)
        info = {
            "seconds": time.perf_counter() - start,
            "n_train": len(observed),
            "losses": fitted.losses if fitted is not None else [],
            "fallback": fallback,
            "fitted": fitted,
            "label": fallback if fallback not in (None, "random") else self.label,
        }
        if inputs is not None:
            info["input_features"] = inputs
        return Proposal(chosen.tolist(), info)

    def _fit(
        self, space: CandidateSpace, idx: np.ndarray, y: np.ndarray
    ) -> tuple[FittedSurrogate | None, str | None]:
        """Fit to maximised values ``y``; on a numerical failure the surrogate's fallback,
        then nothing. Returns the fitted model (``None``: choose at random) and the
        fallback used."""
        surrogate = self.surrogate
        surrogate.prepare(space, progress=self.progress)
        train_idx, train_y = torch.from_numpy(idx), torch.from_numpy(y)
        try:
            fitted = surrogate.fit(train_idx, train_y)
            return fitted, (fitted.fallback if fitted is not None else None)
        except NUMERICAL_ERRORS as exc:
            error = exc
        backup = self._backup(surrogate, space)
        what = "surrogate"
        if backup is not None:
            logger.warning(
                "Surrogate %r failed to fit (%s: %s); falling back to a GP on fixed features (%s).",
                surrogate.name,
                type(error).__name__,
                error,
                backup.name,
            )
            try:
                fitted = backup.fit(train_idx, train_y)
                fitted.fallback = backup.name
                return fitted, backup.name
            except NUMERICAL_ERRORS as exc:
                error = exc
                surrogate, what = backup, "fallback GP"
        logger.warning(
            "The %s %r failed to fit (%s: %s); choosing at random this time.",
            what,
            surrogate.name,
            type(error).__name__,
            error,
        )
        return None, "random"

    def _backup(self, surrogate: Surrogate, space: CandidateSpace) -> Surrogate | None:
        """The surrogate's fallback for ``space``, built once per space."""
        key = space.content_hash()
        if self._fallback is None or self._fallback[0] != key:
            self._fallback = (key, surrogate.fallback(space))
        return self._fallback[1]


@PROPOSERS.register("bayesian")
def _from_config(config: dict[str, Any]) -> BayesianProposer:
    surrogate = config.get("surrogate", {})
    if "instance" in surrogate:
        raise StudyError("This study used a custom surrogate object; pass it again to Optimizer().")
    extra = sorted(set(config) - {"name", "surrogate", "acquisition", "min_observations"})
    if extra:
        raise StudyError(f"Unknown Bayesian proposer setting(s) {extra}.")
    try:
        spec = surrogate_config_from_dict(surrogate)
        acquisition = AcquisitionConfig(**config.get("acquisition", {}))
    except (LlmboError, TypeError) as exc:
        raise StudyError(
            f"Surrogate or acquisition settings this llmbo cannot read: {exc}"
        ) from exc
    return BayesianProposer(spec, acquisition, min_observations=config.get("min_observations", 2))
