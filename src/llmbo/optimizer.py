"""The ask/tell optimizer: composes a space, a surrogate, an acquisition and a study store.

Data flows one way: space -> surrogate (features, GP) -> acquisition -> chosen ids ->
objective -> storage -> next fit. Every suggestion is a deterministic function of the
study seed, the number of trials so far and the observations, so a campaign continued
across processes (``llmbo suggest``/``llmbo observe``) suggests exactly what a single
process would.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmbo.acquisition import AcquisitionConfig, select_candidates
from llmbo.encoders.transformer import EncoderConfig
from llmbo.errors import FitError, InputError, PoolExhaustedError, StudyError
from llmbo.space import CandidateSpace, finite_values
from llmbo.storage import BaseStorage, CandidateTakenError, StudyRecord, TrialState, get_storage
from llmbo.surrogates.base import Surrogate
from llmbo.surrogates.factory import SurrogateSpec, make_surrogate

logger = logging.getLogger("llmbo.optimizer")

__all__ = ["Objective", "Optimizer", "TableObjective"]

#: ``objective(rows) -> values``: rows of the space table (with a ``text`` column),
#: indexed by candidate id; returns one finite number per row.
Objective = Callable[[pd.DataFrame], Sequence[float]]


class TableObjective:
    """Look up values in a column of the space's table (simulated campaigns, benchmarks)."""

    def __init__(self, space: CandidateSpace, column: str) -> None:
        if column not in space.frame.columns:
            raise InputError(
                f"Target column {column!r} is not in the table; available columns: "
                f"{list(map(str, space.frame.columns))}."
            )
        values = pd.to_numeric(space.frame[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            rows = space.frame.index[bad][:5].tolist()
            raise InputError(
                f"Target column {column!r} has {int(bad.sum())} missing, non-numeric or "
                f"infinite value(s) (rows {rows}); clean or drop those rows first."
            )
        self.column = column
        self._values = dict(zip(space.ids, values.to_numpy(dtype=float), strict=True))

    def __call__(self, rows: pd.DataFrame) -> list[float]:
        return [self._values[str(cid)] for cid in rows.index]


def _derived_seed(seed: int, counter: int) -> int:
    digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Optimizer:
    """Bayesian optimisation over a finite pool of text candidates.

    Args:
        space: The candidates.
        surrogate: A surrogate name (``"lora"`` default, ``"projection"``, ``"static"``,
            ``"drfp"``, ``"morgan"``, ``"onehot"``, ``"random"``), a :class:`SurrogateSpec`,
            or a prepared :class:`Surrogate` instance (reused, e.g. across benchmark seeds).
        model: Transformer for LLM surrogates (``"minilm"``: the packaged default).
        acquisition: ``"logei"`` (default), ``"ucb"``, ``"ts"`` or an :class:`AcquisitionConfig`.
        maximize: Maximise (default) or minimise the objective.
        seed: Seed of every random choice; same seed + same observations = same suggestions.
        min_observations: Below this many observations, suggestions are drawn at random.
        soft_tokens: Learnable soft tokens for LLM surrogates.
        device: ``"cpu"``/``"cuda"``; default CUDA when available.
        storage: Where the study lives: a SQLAlchemy URL, a file path (SQLite) or a storage
            object. Default: an in-memory SQLite database (lost at exit).
        study_name: Name of the study in ``storage`` (created if it does not exist).
        progress: Show progress bars.
    """

    def __init__(
        self,
        space: CandidateSpace,
        surrogate: str | SurrogateSpec | Surrogate = "lora",
        *,
        model: str | None = None,
        acquisition: str | AcquisitionConfig = "logei",
        maximize: bool = True,
        seed: int = 0,
        min_observations: int = 2,
        soft_tokens: int | None = None,
        device: str | None = None,
        storage: str | BaseStorage | None = None,
        study_name: str | None = None,
        progress: bool = True,
    ) -> None:
        if not isinstance(space, CandidateSpace):
            raise InputError(f"space must be a CandidateSpace, got {type(space).__name__}.")
        if min_observations < 1:
            raise InputError(f"min_observations must be >= 1, got {min_observations}.")
        self.space = space
        self.acquisition = (
            acquisition
            if isinstance(acquisition, AcquisitionConfig)
            else AcquisitionConfig(name=acquisition)  # type: ignore[arg-type]
        )
        self.maximize = bool(maximize)
        self.seed = int(seed)
        self.min_observations = int(min_observations)
        self.progress = progress
        self._surrogate, self.spec = self._resolve_surrogate(surrogate, model, soft_tokens, device)
        self.storage = get_storage(storage if storage is not None else "sqlite:///:memory:")
        self.study = self._open_study(study_name or f"study-{space.content_hash()[:8]}-{seed}")
        self.last_fit: dict[str, Any] = {}

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _resolve_surrogate(
        surrogate: str | SurrogateSpec | Surrogate,
        model: str | None,
        soft_tokens: int | None,
        device: str | None,
    ) -> tuple[Surrogate | None, SurrogateSpec | None]:
        if isinstance(surrogate, Surrogate):
            return surrogate, None
        spec = SurrogateSpec(name=surrogate) if isinstance(surrogate, str) else surrogate
        encoder = spec.encoder
        if model is not None:
            encoder = replace(encoder, model=model)
        if device is not None:
            encoder = replace(encoder, device=device)
        spec = replace(spec, encoder=encoder)
        if soft_tokens is not None:
            spec = replace(spec, soft_tokens=int(soft_tokens))
        make_surrogate_check = spec.name  # validate the name early (clear error)
        from llmbo.surrogates.base import SURROGATES

        SURROGATES.get(make_surrogate_check)
        return None, spec

    def _config(self) -> dict[str, Any]:
        surrogate = self.spec.to_dict() if self.spec else {"instance": self.surrogate_name}
        return {
            "surrogate": surrogate,
            "acquisition": self.acquisition.to_dict(),
            "min_observations": self.min_observations,
        }

    def _open_study(self, name: str) -> StudyRecord:
        direction = "maximize" if self.maximize else "minimize"
        if name in self.storage.study_names():
            study = self.storage.load_study(name)
            stored = study.space.get("content_hash")
            if stored and stored != self.space.content_hash():
                raise StudyError(
                    f"Study {name!r} was created for a different candidate space; use another "
                    "study name or the original table and template."
                )
            if study.direction != direction or study.seed != self.seed:
                raise StudyError(
                    f"Study {name!r} was created with direction={study.direction}, seed="
                    f"{study.seed}; reopen it with the same settings (Optimizer.load does this)."
                )
            return study
        try:
            space_payload = self.space.to_dict()
        except Exception:  # callable templates cannot be stored; keep the hash only
            space_payload = {"content_hash": self.space.content_hash(), "name": self.space.name}
        return self.storage.create_study(
            name, space=space_payload, config=self._config(), seed=self.seed, direction=direction
        )

    @classmethod
    def load(
        cls,
        storage: str | BaseStorage,
        study_name: str,
        *,
        progress: bool = True,
        device: str | None = None,
    ) -> Optimizer:
        """Reopen a stored study with the space and settings it was created with."""
        store = get_storage(storage)
        study = store.load_study(study_name)
        if "records" not in study.space:
            raise StudyError(
                f"Study {study_name!r} does not store its space; rebuild the Optimizer with the space."
            )
        space = CandidateSpace.from_dict(study.space)
        cfg = study.config
        if "instance" in cfg["surrogate"]:
            raise StudyError(
                f"Study {study_name!r} used a custom surrogate object; pass it again to Optimizer()."
            )
        spec = SurrogateSpec.from_dict(cfg["surrogate"])
        return cls(
            space,
            spec,
            acquisition=AcquisitionConfig(**cfg["acquisition"]),
            maximize=study.direction == "maximize",
            seed=study.seed,
            min_observations=cfg.get("min_observations", 2),
            device=device,
            storage=store,
            study_name=study_name,
            progress=progress,
        )

    @property
    def surrogate(self) -> Surrogate:
        """The surrogate (built lazily: loading a transformer takes seconds)."""
        if self._surrogate is None:
            assert self.spec is not None
            self._surrogate = make_surrogate(self.spec)
        return self._surrogate

    @property
    def surrogate_name(self) -> str:
        return self.spec.name if self.spec else self.surrogate.name

    # ----------------------------------------------------------------- ask/tell
    def _observations(self) -> tuple[np.ndarray, np.ndarray]:
        trials = self.storage.trials(self.study.study_id, states=[TrialState.COMPLETE])
        idx = (
            self.space.index_of([t.candidate_id for t in trials])
            if trials
            else np.empty(0, np.int64)
        )
        values = np.array([t.value for t in trials], dtype=np.float64)
        return idx, values

    def ask(self, n: int = 1) -> list[str]:
        """Suggest ``n`` new candidate ids (marked pending until told)."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise InputError(f"ask(n) needs a positive integer n, got {n!r}.")
        for _attempt in range(5):
            chosen = self._propose(int(n))
            try:
                self.storage.reserve(self.study.study_id, chosen)
            except CandidateTakenError:  # another worker took one meanwhile: propose again
                continue
            return chosen
        raise StudyError(
            "Could not reserve candidates after 5 attempts; too many concurrent workers?"
        )

    def _propose(self, n: int) -> list[str]:
        trials = self.storage.trials(self.study.study_id)
        taken = {t.candidate_id for t in trials if t.state.is_active()}
        pending = [
            t.candidate_id for t in trials if t.state in (TrialState.PENDING, TrialState.RUNNING)
        ]
        taken_mask = np.zeros(len(self.space), dtype=bool)
        if taken:
            taken_mask[self.space.index_of(sorted(taken))] = True
        available = torch.from_numpy(np.flatnonzero(~taken_mask))
        if n > len(available):
            raise PoolExhaustedError(
                f"Asked for {n} candidate(s) but only {len(available)} of {len(self.space)} remain "
                f"unevaluated ({len(pending)} pending). Ask for fewer or tell pending results first."
            )
        seed = _derived_seed(self.seed, len(trials))
        idx, values = self._observations()
        start = time.perf_counter()
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(seed)
            fitted = None
            if len(idx) >= self.min_observations:
                fitted = self._fit(idx, values)
            y = values if self.maximize else -values
            pending_idx = torch.from_numpy(self.space.index_of(pending)) if pending else None
            chosen = select_candidates(
                fitted,
                available,
                n,
                best_f=float(y.max()) if len(y) else None,
                pending=pending_idx,
                config=self.acquisition,
                seed=seed,
            )
        self.last_fit = {
            "seconds": time.perf_counter() - start,
            "n_train": len(idx),
            "losses": fitted.losses if fitted is not None else [],
            "fallback": fitted.fallback if fitted is not None else ("random" if len(idx) else None),
        }
        return [self.space.ids[i] for i in chosen.tolist()]

    def _rng_devices(self) -> list[Any]:
        return [torch.cuda.current_device()] if torch.cuda.is_available() else []

    def _fit(self, idx: np.ndarray, values: np.ndarray) -> Any:
        surrogate = self.surrogate
        surrogate.prepare(self.space, progress=self.progress)
        y = torch.from_numpy(values if self.maximize else -values)
        try:
            return surrogate.fit(torch.from_numpy(idx), y)
        except FitError as exc:
            logger.warning(
                "Surrogate %r failed to fit (%s); choosing at random this time.",
                surrogate.name,
                exc,
            )
            return None

    def tell(self, ids: str | Sequence[str], values: float | Sequence[float]) -> None:
        """Record measured values for candidates (suggested or not).

        Telling the same value twice is a no-op; a different value for an already
        measured candidate raises :class:`~llmbo.errors.TrialStateError`.
        """
        if isinstance(ids, str):
            ids = [ids]
            values = [values]  # type: ignore[list-item]
        elif np.isscalar(values):
            raise InputError("Give one value per candidate id.")
        ids = [str(i) for i in ids]
        values = list(values)  # type: ignore[arg-type]
        if len(ids) != len(values):
            raise InputError(
                f"Got {len(ids)} candidate ids but {len(values)} values; give one value per id."
            )
        checked = finite_values(values)
        self.space.index_of(ids)  # unknown ids -> UnknownCandidateError before anything is written
        for cid, value in zip(ids, checked, strict=True):
            self.storage.record(self.study.study_id, cid, float(value))

    def fail(self, ids: str | Sequence[str], error: str) -> None:
        """Mark pending suggestions as failed (their candidates may be suggested again)."""
        if isinstance(ids, str):
            ids = [ids]
        wanted = set(map(str, ids))
        for t in self.storage.trials(
            self.study.study_id, states=[TrialState.PENDING, TrialState.RUNNING]
        ):
            if t.candidate_id in wanted:
                self.storage.fail(t.trial_id, error)

    def run(
        self,
        objective: Objective,
        iterations: int,
        *,
        batch_size: int = 1,
        callback: Callable[[Optimizer, list[str], list[float]], None] | None = None,
    ) -> pd.DataFrame:
        """Run ``iterations`` rounds of ask -> objective -> tell; returns the history.

        If the objective raises, the round's trials are marked failed and the error
        propagates; everything measured before stays in the study.
        """
        if iterations < 0:
            raise InputError(f"iterations must be >= 0, got {iterations}.")
        bar = None
        if self.progress and iterations > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=iterations, desc=f"llmbo {self.surrogate_name}", leave=False)
        try:
            for _ in range(iterations):
                ids = self.ask(batch_size)
                try:
                    raw = objective(self.space.rows(ids))
                    values = finite_values(list(raw), "objective value")
                    if len(values) != len(ids):
                        raise InputError(
                            f"The objective returned {len(values)} values for {len(ids)} candidates."
                        )
                except BaseException as exc:
                    self.fail(ids, f"objective raised {type(exc).__name__}: {exc}")
                    raise
                self.tell(ids, values.tolist())
                if callback is not None:
                    callback(self, ids, values.tolist())
                if bar is not None:
                    best = self.best_value
                    bar.set_postfix(best=f"{best:.4g}" if best is not None else "-")
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    # ------------------------------------------------------------------ results
    @property
    def history(self) -> pd.DataFrame:
        """One row per trial: number, candidate id, text, state, value, timestamps, error."""
        trials = self.storage.trials(self.study.study_id)
        rows = [
            {
                "trial": t.number,
                "candidate_id": t.candidate_id,
                "text": self.space.text(t.candidate_id) if t.candidate_id in self.space else None,
                "state": t.state.value.lower(),
                "value": t.value,
                "created_at": t.created_at,
                "completed_at": t.completed_at,
                "error": t.error,
            }
            for t in trials
        ]
        columns = [
            "trial",
            "candidate_id",
            "text",
            "state",
            "value",
            "created_at",
            "completed_at",
            "error",
        ]
        return pd.DataFrame(rows, columns=columns)

    @property
    def best_value(self) -> float | None:
        _, values = self._observations()
        if len(values) == 0:
            return None
        return float(values.max() if self.maximize else values.min())

    def best(self, k: int = 1) -> pd.DataFrame:
        """The ``k`` best measured candidates with their table rows and values."""
        idx, values = self._observations()
        if len(values) == 0:
            return pd.DataFrame()
        order = np.argsort(-values if self.maximize else values, kind="stable")[:k]
        rows = self.space.rows([self.space.ids[i] for i in idx[order]])
        rows.insert(1, "value", values[order])
        return rows

    def encoder_config(self) -> EncoderConfig | None:
        return self.spec.encoder if self.spec else None
