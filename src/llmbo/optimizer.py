"""The ask/tell optimizer: composes a space, a surrogate, an acquisition and a study store.

Data flows one way: space -> surrogate (features, GP) -> acquisition -> chosen ids ->
objective -> storage -> next fit. Every suggestion is a deterministic function of the
study seed, the number of trials so far and the observations, so a campaign continued
across processes (``llmbo suggest``/``llmbo observe``) suggests exactly what a single
process would.

Resume rules (see RELIABILITY.md)
---------------------------------
* :meth:`Optimizer.run` (an automated campaign) reserves each batch as ``RUNNING`` trials
  under a lease held by this worker (``host:pid:random``). While the objective runs, a
  daemon thread extends the lease every ``heartbeat_seconds``. A crashed or killed worker
  stops extending it, so its trials go stale after at most ``lease_seconds``.
* Whenever a study is opened and before every ask, stale ``RUNNING`` trials (lease passed)
  are marked ``FAILED`` ("lease expired ...") and their candidates are offered again. A late
  result of such a trial is still stored if nobody reserved the candidate meanwhile.
* :meth:`Optimizer.ask` (manual campaigns, ``llmbo suggest``) hands out ``PENDING``
  trials without a lease: a suggestion stays pending, and is never suggested again, until
  it is told, failed (:meth:`Optimizer.fail`) or released (:meth:`Optimizer.release_pending`,
  which makes every pending candidate available again).
* Completed values never change: telling the same value again is a no-op, a different one
  raises :class:`~llmbo.errors.TrialStateError`.

Numerical faults
----------------
If the surrogate's fit (or the acquisition on its model) fails numerically (one of
:data:`llmbo.surrogates.numerics.NUMERICAL_ERRORS`; the deep kernel has already retried
with growing Cholesky jitter), the optimizer logs a warning and falls back to a GP on
fixed features of the same candidates (for a deep kernel: the frozen embeddings, i.e. the
``static`` surrogate of the same model), then to a random choice. ``last_fit["fallback"]``
names the fallback used, ``None`` when the requested model worked.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmbo._validate import check_seed, check_study_name
from llmbo.acquisition import AcquisitionConfig, select_candidates, warp_outcomes
from llmbo.encoders.base import Featurizer
from llmbo.encoders.transformer import EncoderConfig
from llmbo.errors import (
    InputError,
    LlmboError,
    PoolExhaustedError,
    SpaceError,
    StudyError,
    StudySettingsError,
    TrialStateError,
)
from llmbo.space import CandidateSpace, finite_values
from llmbo.storage import (
    BaseStorage,
    CandidateTakenError,
    StudyRecord,
    TrialRecord,
    TrialState,
    get_storage,
)
from llmbo.surrogates.base import FittedSurrogate, Surrogate
from llmbo.surrogates.deep_kernel import DeepKernelGP
from llmbo.surrogates.factory import SurrogateSpec, make_surrogate
from llmbo.surrogates.feature_gp import FeatureGP
from llmbo.surrogates.numerics import NUMERICAL_ERRORS

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
        raw = space.frame[column]
        if pd.api.types.is_bool_dtype(raw):
            raise InputError(
                f"Target column {column!r} holds true/false values, not measurements; give a "
                "numeric column (e.g. 1/0 if that is what was measured)."
            )
        values = pd.to_numeric(raw, errors="coerce")
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


#: Stored settings that say where to run, not what to compute: they may differ on reopening.
_RUNTIME_SETTINGS = frozenset({"surrogate.encoder.device"})


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """``key: stored -> given`` for every setting (dotted key) that differs, runtime ones
    (the device) excepted; ``[]`` when the two describe the same study."""
    a, b = _flatten(stored), _flatten(given)
    return [
        f"{key}={a.get(key)!r} (asked: {b.get(key)!r})"
        for key in sorted(set(a) | set(b))
        if key not in _RUNTIME_SETTINGS and a.get(key) != b.get(key)
    ]


def normalised_config(config: dict[str, Any]) -> dict[str, Any]:
    """A stored study config with every default filled in (studies written by older
    versions lack newer fields), so two configs compare field by field."""
    out = dict(config)
    surrogate = config.get("surrogate", {})
    if "instance" not in surrogate:
        out["surrogate"] = SurrogateSpec.from_dict(surrogate).to_dict()
    out["acquisition"] = AcquisitionConfig(**config.get("acquisition", {})).to_dict()
    out.setdefault("min_observations", 2)
    return out


#: Attempts at reserving a proposal before giving up when other workers keep taking them.
_RESERVE_ATTEMPTS = 10
#: Noise floor (standardised units) of the fixed-feature fallback GP: more regularised than
#: the surrogates' default, since the fallback runs when the data were hard to fit.
_FALLBACK_NOISE = 1e-3


class _FixedFeatures(Featurizer):
    """Features computed once elsewhere (the fallback GP's input)."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        return self.features


def _informative_columns(features: torch.Tensor) -> torch.Tensor | None:
    """``N x d'`` float64 features without constant columns; ``None`` if nothing is left.

    Constant columns carry no information and make input normalisation divide by zero.
    """
    x = features.detach().to("cpu", torch.float64)
    if x.ndim != 2 or not torch.isfinite(x).all():
        return None
    spread = x.max(0).values - x.min(0).values
    keep = spread > 1e-12 * x.abs().max(0).values.clamp_min(1.0)
    return x[:, keep] if bool(keep.any()) else None


def _shared_storage(storage: BaseStorage) -> bool:
    """Whether other processes can see this storage (not a private in-memory database)."""
    from sqlalchemy.engine import make_url

    url = getattr(storage, "url", None)
    if not isinstance(url, str):
        return True
    parsed = make_url(url)
    return not (parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"))


def space_payload(space: CandidateSpace, *, shared: bool) -> dict[str, Any]:
    """The space as stored in a new study, checked to rebuild exactly (see Optimizer.load).

    Callable templates cannot be stored (the hash only is kept). Tables whose values do
    not survive storage (e.g. ``inf`` in a template column, written as JSON ``null``) would
    give a study nobody can reopen: :class:`SpaceError` for a ``shared`` storage (one other
    processes can open), the hash only for a private in-memory one.
    """
    hash_only = {"content_hash": space.content_hash(), "name": space.name}
    try:
        payload = space.to_dict()
    except Exception:  # callable templates cannot be stored; keep the hash only
        return hash_only
    try:
        problem = (
            None
            if CandidateSpace.from_dict(payload).content_hash() == space.content_hash()
            else "it rebuilds with other texts"
        )
    except LlmboError as exc:
        problem = str(exc)
    if problem is None:
        return payload
    if not shared:
        logger.debug("Space not stored in the in-memory study: %s", problem)
        return hash_only
    raise SpaceError(
        f"This table cannot be stored in a study: read back, {problem} Values such as "
        "inf or -inf in template columns do not survive storage; clean or drop those rows."
    )


class _Heartbeat:
    """A daemon thread that keeps the leases of some ``RUNNING`` trials alive.

    Failures to reach the database are logged and retried at the next beat; a trial that
    is no longer ``RUNNING`` (its lease expired and another worker noticed) is dropped from
    the beat with a warning. The thread never touches anything else.
    """

    def __init__(
        self, storage: BaseStorage, trial_ids: Sequence[int], lease: float, interval: float
    ) -> None:
        self.storage = storage
        self.trial_ids = list(trial_ids)
        self.lease = lease
        self.interval = interval
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmbo-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval))

    def _loop(self) -> None:
        while self.trial_ids and not self._stop.wait(self.interval):
            try:
                records = self.storage.heartbeat(self.trial_ids, self.lease)
            except Exception as exc:  # keep beating: the next attempt may reach the database
                logger.warning("Heartbeat for trials %s failed: %r", self.trial_ids, exc)
                continue
            self.beats += 1
            lost = [r for r in records if r.state is not TrialState.RUNNING]
            for r in lost:
                logger.warning(
                    "Trial %d (candidate %s) lost its lease (%s: %s); its result will be "
                    "stored only if nobody reserved the candidate meanwhile.",
                    r.trial_id,
                    r.candidate_id,
                    r.state.name,
                    r.error,
                )
            gone = {r.trial_id for r in lost}
            self.trial_ids = [t for t in self.trial_ids if t not in gone]


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
        lease_seconds: Lease of the ``RUNNING`` trials of :meth:`run`: a trial whose worker
            stopped extending it for this long is stale and its candidate is offered again.
        heartbeat_seconds: How often :meth:`run` extends its leases while the objective
            runs (default: a quarter of ``lease_seconds``).
        check_model: Check now that the transformer of an LLM surrogate can be found (a
            missing model fails here, not after measurements were told). Code that only
            reads a study (history, best) may pass ``False``.

    Resume rules (also in RELIABILITY.md): :meth:`run` reserves ``RUNNING`` trials under a
    lease kept alive by a heartbeat thread; opening a study and every ask first fail the
    ``RUNNING`` trials whose lease passed (:meth:`expire_stale`), so a crashed worker's
    candidates are offered again. :meth:`ask` hands out ``PENDING`` trials that stay
    pending (and are never suggested again) until told, failed or released with
    :meth:`release_pending`. Numerical failures of the surrogate fall back to a GP on fixed
    features, then to a random choice; ``last_fit["fallback"]`` says which was used.
    ``last_fit`` also holds the last ask's ``seconds``, ``n_train``, training ``losses``
    and the ``fitted`` model (a :class:`~llmbo.surrogates.base.FittedSurrogate` or
    ``None``), e.g. to inspect the GP from a :meth:`run` callback.
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
        lease_seconds: float = 60.0,
        heartbeat_seconds: float | None = None,
        check_model: bool = True,
    ) -> None:
        if not isinstance(space, CandidateSpace):
            raise InputError(f"space must be a CandidateSpace, got {type(space).__name__}.")
        if (
            isinstance(min_observations, bool)
            or not isinstance(min_observations, int | np.integer)
            or min_observations < 1
        ):
            raise InputError(f"min_observations must be an integer >= 1, got {min_observations!r}.")
        if not (
            isinstance(maximize, bool | np.bool_) or (type(maximize) is int and maximize in (0, 1))
        ):
            raise InputError(
                f"maximize must be True or False, got {maximize!r}; pass maximize=False to "
                "minimise."
            )
        seed = check_seed(seed)
        if study_name is not None:
            study_name = check_study_name(study_name)
        for label, seconds in (
            ("lease_seconds", lease_seconds),
            ("heartbeat_seconds", heartbeat_seconds),
        ):
            if seconds is not None and not (
                isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0
            ):
                raise InputError(f"{label} must be a positive number of seconds, got {seconds!r}.")
        self.lease_seconds = float(lease_seconds)
        self.heartbeat_seconds = float(
            heartbeat_seconds if heartbeat_seconds is not None else self.lease_seconds / 4
        )
        if self.heartbeat_seconds >= self.lease_seconds:
            raise InputError(
                f"heartbeat_seconds={self.heartbeat_seconds} must be shorter than "
                f"lease_seconds={self.lease_seconds}, or leases expire between beats."
            )
        self._worker: tuple[int, str] | None = None
        self._fallback: tuple[str, Surrogate | None] | None = None
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
        self._surrogate, self.spec = self._resolve_surrogate(
            surrogate, model, soft_tokens, device, check_model=check_model
        )
        self.storage = get_storage(storage if storage is not None else "sqlite:///:memory:")
        #: Whether this object created its study (``False``: it reopened an existing one).
        self.created_study = False
        if study_name is None:
            study_name = f"study-{space.content_hash()[:8]}-{self.seed}"
        self.study = self._open_study(study_name)
        self.last_fit: dict[str, Any] = {}

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _resolve_surrogate(
        surrogate: str | SurrogateSpec | Surrogate,
        model: str | None,
        soft_tokens: int | None,
        device: str | None,
        *,
        check_model: bool,
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
        from llmbo.surrogates.base import SURROGATES
        from llmbo.surrogates.factory import uses_encoder

        SURROGATES.get(spec.name)  # validate the name early (clear error)
        if check_model and uses_encoder(spec):
            # A missing model fails now, not after the first measurements were told.
            from llmbo.encoders.transformer import check_model_available

            check_model_available(spec.encoder.model)
        return None, spec

    def _config(self) -> dict[str, Any]:
        surrogate = self.spec.to_dict() if self.spec else {"instance": self.surrogate_name}
        return {
            "surrogate": surrogate,
            "acquisition": self.acquisition.to_dict(),
            "min_observations": self.min_observations,
        }

    def _open_study(self, name: str) -> StudyRecord:
        if name not in self.storage.study_names():
            payload = self._space_payload()
            direction = "maximize" if self.maximize else "minimize"
            try:
                study = self.storage.create_study(
                    name,
                    space=payload,
                    config=self._config(),
                    seed=self.seed,
                    direction=direction,
                )
                self.created_study = True
                return study
            except StudyError:
                if name not in self.storage.study_names():
                    raise
                # Another worker created it a moment ago: open theirs (checked below).
        return self._reopen_study(name)

    def _space_payload(self) -> dict[str, Any]:
        return space_payload(self.space, shared=_shared_storage(self.storage))

    def _reopen_study(self, name: str) -> StudyRecord:
        """Open an existing study; :class:`StudySettingsError` unless every stored setting
        (space, seed, direction, surrogate, acquisition...) equals this object's."""
        direction = "maximize" if self.maximize else "minimize"
        study = self.storage.load_study(name)
        stored = study.space.get("content_hash")
        if stored and stored != self.space.content_hash():
            raise StudySettingsError(
                f"Study {name!r} was created for a different candidate space; use another "
                "study name or the original table and template."
            )
        try:
            had = normalised_config(study.config)
        except (LlmboError, TypeError) as exc:
            raise StudyError(f"Study {name!r} has settings this llmbo cannot read: {exc}") from exc
        had.update(seed=study.seed, direction=study.direction)
        asked = normalised_config(self._config())
        asked.update(seed=self.seed, direction=direction)
        differences = settings_differences(had, asked)
        if differences:
            raise StudySettingsError(
                f"Study {name!r} was created with other settings: "
                + "; ".join(differences)
                + ". A study keeps the settings it was created with: reopen it with "
                "Optimizer.load() (in the CLI, leave the options out), or start a new study."
            )
        if not getattr(self.storage, "readonly", False):
            self.storage.expire_stale(study.study_id)  # a crashed worker's trials are free again
        return study

    @classmethod
    def load(
        cls,
        storage: str | BaseStorage,
        study_name: str,
        *,
        progress: bool = True,
        device: str | None = None,
        lease_seconds: float = 60.0,
        heartbeat_seconds: float | None = None,
        trust_remote_code: bool = False,
        check_model: bool = True,
    ) -> Optimizer:
        """Reopen a stored study with the space and settings it was created with.

        Stale ``RUNNING`` trials (expired leases) are failed on opening, so their
        candidates are offered again; ``PENDING`` suggestions stay pending.

        Settings that run foreign code are never taken from the stored data alone: a study
        created with ``EncoderConfig(trust_remote_code=True)`` is only reopened when this
        call passes ``trust_remote_code=True`` too (anyone who can write to the study file or
        database could otherwise make this process run Python from the model's folder).
        """
        store = get_storage(storage)
        study = store.load_study(study_name)
        stored_trust = (
            study.config.get("surrogate", {}).get("encoder", {}).get("trust_remote_code", False)
        )
        if stored_trust is not False and not trust_remote_code:
            model = study.config.get("surrogate", {}).get("encoder", {}).get("model")
            raise StudySettingsError(
                f"Study {study_name!r} asks to run the Python code that comes with model "
                f"{model!r} (trust_remote_code), and llmbo never takes that from stored data. "
                "If you trust that model folder, say so at this call: "
                "Optimizer.load(..., trust_remote_code=True), or --trust-remote-code."
            )
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
        try:
            spec = SurrogateSpec.from_dict(cfg["surrogate"])
        except (LlmboError, TypeError) as exc:
            raise StudyError(
                f"Study {study_name!r} has surrogate settings this llmbo cannot read: {exc}"
            ) from exc
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
            lease_seconds=lease_seconds,
            heartbeat_seconds=heartbeat_seconds,
            check_model=check_model,
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

    @property
    def worker_id(self) -> str:
        """This process's worker id, ``host:pid:random`` (new after a fork)."""
        pid = os.getpid()
        if self._worker is None or self._worker[0] != pid:
            self._worker = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:12]}")
        return self._worker[1]

    def expire_stale(self) -> list[str]:
        """Fail ``RUNNING`` trials whose lease passed; returns their (now free) candidate ids."""
        return [t.candidate_id for t in self.storage.expire_stale(self.study.study_id)]

    def release_pending(self) -> list[str]:
        """Offer every ``PENDING`` suggestion again; returns the released candidate ids.

        Each pending trial becomes ``FAILED`` with the error ``"released"``. A value told
        later for a released candidate is still stored, unless the candidate was suggested
        again meanwhile (then tell it to the new suggestion).
        """
        return [t.candidate_id for t in self.storage.release_pending(self.study.study_id)]

    def ask(self, n: int = 1) -> list[str]:
        """Suggest ``n`` new candidate ids (kept ``PENDING`` until told, failed or released)."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise InputError(f"ask(n) needs a positive integer n, got {n!r}.")
        return [t.candidate_id for t in self._reserve(int(n), running=False)]

    def _reserve(self, n: int, *, running: bool) -> list[TrialRecord]:
        """Propose ``n`` candidates and reserve them, proposing again if a worker took one."""
        for attempt in range(_RESERVE_ATTEMPTS):
            self.storage.expire_stale(self.study.study_id)
            chosen = self._propose(n)
            try:
                if running:
                    return self.storage.reserve(
                        self.study.study_id,
                        chosen,
                        state=TrialState.RUNNING,
                        worker=self.worker_id,
                        lease_seconds=self.lease_seconds,
                    )
                return self.storage.reserve(self.study.study_id, chosen)
            except CandidateTakenError as exc:
                # Another worker reserved some of them meanwhile; the next proposal sees it.
                logger.debug("Attempt %d: %s", attempt + 1, exc)
        raise StudyError(
            f"Could not reserve {n} candidate(s) after {_RESERVE_ATTEMPTS} attempts: other "
            "workers kept taking the proposed ones. Retry, or use fewer concurrent workers."
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
        fallback: str | None = None
        if len(idx) >= self.min_observations:
            # Build and prepare the surrogate before seeding: constructing it draws random
            # numbers (initial weights), and whether that happens inside the seeded block
            # must not depend on whether this process built it earlier.
            with torch.random.fork_rng(devices=self._rng_devices()):
                self.surrogate.prepare(self.space, progress=self.progress)
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(seed)
            fitted = None
            # Maximised, then as the surrogate and the acquisition see them.
            y = warp_outcomes(values if self.maximize else -values, self.acquisition.outcome_power)
            if len(idx) >= self.min_observations:
                fitted, fallback = self._fit(idx, y)
            pending_idx = torch.from_numpy(self.space.index_of(pending)) if pending else None

            def select(model: FittedSurrogate | None) -> torch.Tensor:
                return select_candidates(
                    model,
                    available,
                    n,
                    best_f=float(y.max()) if len(y) else None,
                    pending=pending_idx,
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
                    fallback or self.surrogate_name,
                    type(exc).__name__,
                    exc,
                )
                fallback, fitted = "random", None
                chosen = select(None)
        self.last_fit = {
            "seconds": time.perf_counter() - start,
            "n_train": len(idx),
            "losses": fitted.losses if fitted is not None else [],
            "fallback": fallback,
            "fitted": fitted,
        }
        return [self.space.ids[i] for i in chosen.tolist()]

    def _rng_devices(self) -> list[Any]:
        return [torch.cuda.current_device()] if torch.cuda.is_available() else []

    def _fit(self, idx: np.ndarray, y: np.ndarray) -> tuple[FittedSurrogate | None, str | None]:
        """Fit the surrogate to maximised values ``y``; on a numerical failure the
        fixed-feature GP, then nothing.

        Returns the fitted model (``None``: choose at random) and the fallback used.
        """
        surrogate = self.surrogate
        surrogate.prepare(self.space, progress=self.progress)
        train_idx = torch.from_numpy(idx)
        y = torch.from_numpy(y)
        try:
            fitted = surrogate.fit(train_idx, y)
            return fitted, (fitted.fallback if fitted is not None else None)
        except NUMERICAL_ERRORS as exc:
            error = exc
        backup = self._fallback_surrogate(surrogate)
        if backup is not None:
            logger.warning(
                "Surrogate %r failed to fit (%s: %s); falling back to a GP on fixed features (%s).",
                surrogate.name,
                type(error).__name__,
                error,
                backup.name,
            )
            try:
                fitted = backup.fit(train_idx, y)
                fitted.fallback = backup.name
                return fitted, backup.name
            except NUMERICAL_ERRORS as exc:
                error = exc
                surrogate, what = backup, "fallback GP"
        else:
            what = "surrogate"
        logger.warning(
            "The %s %r failed to fit (%s: %s); choosing at random this time.",
            what,
            surrogate.name,
            type(error).__name__,
            error,
        )
        return None, "random"

    def _fallback_surrogate(self, surrogate: Surrogate) -> Surrogate | None:
        """A GP on fixed features of the same candidates (cached per space), if there is one.

        For a deep kernel: the frozen embeddings of its transformer (trainable parts reset),
        i.e. the ``static`` surrogate of the same model. For a fixed-feature GP: the same
        features with a higher noise floor (for the ``components`` kernel: its Tanimoto part
        on the one-hot blocks). Constant feature columns are dropped.
        """
        key = self.space.content_hash()
        if self._fallback is not None and self._fallback[0] == key:
            return self._fallback[1]
        features: torch.Tensor | None = None
        kernel = "matern"
        if isinstance(surrogate, DeepKernelGP):
            surrogate.encoder.reset_parameters()
            features = surrogate.encoder.embed()
            surrogate.reset()  # its warm-start state no longer matches the reset encoder
            name = "static"
        elif isinstance(surrogate, FeatureGP) and surrogate.features_ is not None:
            features, kernel = surrogate.fallback_features()
            name = f"{surrogate.name}-regularised"
        backup: Surrogate | None = None
        if features is not None:
            informative = _informative_columns(features)
            if informative is not None:
                # No noise prior here whatever the surrogate had: a higher floor instead.
                backup = FeatureGP(
                    _FixedFeatures(informative),
                    kernel=kernel,  # type: ignore[arg-type]
                    name=name,
                    noise_lower_bound=_FALLBACK_NOISE,
                )
                backup.prepare(self.space)
        self._fallback = (key, backup)
        return backup

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
        self._check_consistent(ids, checked)
        # One transaction: all of them are stored, or (on a crash or an error) none.
        self.storage.record_many(
            self.study.study_id,
            [(cid, float(value)) for cid, value in zip(ids, checked, strict=True)],
        )

    def _check_consistent(self, ids: Sequence[str], values: np.ndarray) -> None:
        """Refuse the whole tell, before writing, if a candidate is told twice with
        different values (one that contradicts a stored value is refused by
        ``record_many``, atomically)."""
        seen: dict[str, float] = {}
        for cid, value in zip(ids, values, strict=True):
            if cid in seen and seen[cid] != value:
                raise TrialStateError(
                    f"Candidate {cid!r} is told twice in one call with different values "
                    f"({seen[cid]!r} and {float(value)!r}); give one value per candidate."
                )
            seen[cid] = float(value)

    def fail(self, ids: str | Sequence[str], error: str) -> None:
        """Mark pending suggestions as failed (their candidates may be suggested again).

        All of them in one transaction. Every id must be a candidate that was suggested
        and not measured: :class:`~llmbo.errors.UnknownCandidateError` (not a candidate) or
        :class:`~llmbo.errors.TrialStateError` (measured, or never suggested) otherwise,
        and nothing changes. A suggestion that already failed (released, or its lease
        expired) stays failed.
        """
        if isinstance(ids, str):
            ids = [ids]
        wanted = list(dict.fromkeys(str(i) for i in ids))
        self.space.index_of(wanted)  # unknown ids -> UnknownCandidateError
        trials = self.storage.trials(self.study.study_id)
        active = {t.candidate_id: t for t in trials if t.state.is_active()}
        tried = {t.candidate_id for t in trials}
        measured = [
            f"{c!r} (measured: {active[c].value!r})"
            for c in wanted
            if c in active and active[c].state is TrialState.COMPLETE
        ]
        never = [repr(c) for c in wanted if c not in tried]
        if measured or never:
            parts = []
            if measured:
                parts.append(
                    "already measured, and measurements never change: " + ", ".join(measured)
                )
            if never:
                parts.append("never suggested: " + ", ".join(never))
            raise TrialStateError(
                "Only pending suggestions can be failed; nothing was changed. Candidate(s) "
                + "; ".join(parts)
                + "."
            )
        self.storage.fail_many([active[c].trial_id for c in wanted if c in active], error)

    def run(
        self,
        objective: Objective,
        iterations: int,
        *,
        batch_size: int = 1,
        callback: Callable[[Optimizer, list[str], list[float]], None] | None = None,
    ) -> pd.DataFrame:
        """Run ``iterations`` rounds of ask -> objective -> tell; returns the history.

        Each round's candidates are reserved as ``RUNNING`` trials under this worker's lease,
        which a heartbeat thread extends while the objective runs; several processes may
        run the same study at once. If the objective raises (or the process is
        interrupted), the round's trials are marked failed and the error propagates; if the
        process dies, its trials expire after ``lease_seconds`` and are offered again.
        Everything measured before stays in the study.
        """
        if not isinstance(iterations, int | np.integer) or iterations < 0:
            raise InputError(f"iterations must be an integer >= 0, got {iterations!r}.")
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        bar = None
        if self.progress and iterations > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=iterations, desc=f"llmbo {self.surrogate_name}", leave=False)
        try:
            for _ in range(int(iterations)):
                trials = self._reserve(int(batch_size), running=True)
                ids = [t.candidate_id for t in trials]
                with self._keep_alive(trials):
                    try:
                        raw = objective(self.space.rows(ids))
                        values = finite_values(list(raw), "objective value")
                        if len(values) != len(ids):
                            raise InputError(
                                f"The objective returned {len(values)} values for {len(ids)} "
                                "candidates."
                            )
                    except BaseException as exc:
                        self._fail_trials(trials, f"objective raised {type(exc).__name__}: {exc}")
                        raise
                self._complete_trials(trials, values.tolist())
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

    def run_until(
        self,
        objective: Objective,
        total: int,
        *,
        batch_size: int = 1,
        callback: Callable[[Optimizer, list[str], list[float]], None] | None = None,
    ) -> pd.DataFrame:
        """Run rounds until the study holds ``total`` measured candidates (resume-friendly).

        Counts the ``COMPLETE`` trials already stored (e.g. by a run that crashed), runs the
        missing full rounds of ``batch_size`` and, if needed, one smaller last round, so a
        resumed campaign ends with exactly ``total`` measurements. Returns the history.
        """
        if not isinstance(total, int | np.integer) or total < 0:
            raise InputError(f"total must be an integer >= 0, got {total!r}.")
        done = len(self.storage.trials(self.study.study_id, states=[TrialState.COMPLETE]))
        rounds, rest = divmod(max(0, int(total) - done), int(batch_size))
        if done:
            logger.info(
                "Study %r holds %d measurement(s); running %d more to reach %d.",
                self.study.name,
                done,
                int(total) - done,
                total,
            )
        self.run(objective, rounds, batch_size=batch_size, callback=callback)
        if rest:
            self.run(objective, 1, batch_size=rest, callback=callback)
        return self.history

    @contextmanager
    def _keep_alive(self, trials: Sequence[TrialRecord]) -> Iterator[None]:
        """Extend the leases of ``trials`` from a daemon thread while the block runs."""
        if not _shared_storage(self.storage):  # nobody else can see (or expire) them
            yield
            return
        with _Heartbeat(
            self.storage, [t.trial_id for t in trials], self.lease_seconds, self.heartbeat_seconds
        ):
            yield

    def _fail_trials(self, trials: Sequence[TrialRecord], error: str) -> None:
        for t in trials:
            try:
                self.storage.fail(t.trial_id, error)
            except Exception as exc:  # keep the objective's own error the one that propagates
                logger.warning("Could not mark trial %d failed: %r", t.trial_id, exc)

    def _complete_trials(self, trials: Sequence[TrialRecord], values: Sequence[float]) -> None:
        for t, value in zip(trials, values, strict=True):
            try:
                self.storage.complete(t.trial_id, float(value))
            except TrialStateError as exc:
                # The lease expired and another worker took the candidate: its trial wins.
                logger.warning(
                    "Result %r of candidate %s not stored: %s", value, t.candidate_id, exc
                )

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
        """The ``k`` best measured candidates with their table rows and values (in the
        column :attr:`CandidateSpace.value_column <llmbo.space.CandidateSpace.value_column>`,
        ``"value"`` unless the table has a column of that name)."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise InputError(f"best(k) needs an integer k >= 0, got {k!r}.")
        idx, values = self._observations()
        if len(values) == 0:
            return pd.DataFrame()
        order = np.argsort(-values if self.maximize else values, kind="stable")[:k]
        rows = self.space.rows([self.space.ids[i] for i in idx[order]])
        rows.insert(1, self.space.value_column, values[order])
        return rows

    def encoder_config(self) -> EncoderConfig | None:
        return self.spec.encoder if self.spec else None
