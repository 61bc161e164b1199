"""The ask/tell optimizer: a :class:`~llmbo.study.Study` whose proposer is Bayesian.

:class:`Optimizer` is the public facade of the engine. It builds the proposer from a
surrogate name, its config (:mod:`llmbo.surrogates.config`) or a prepared
:class:`~llmbo.surrogates.base.Surrogate` (``"random"``: the random proposer) and an
acquisition, and inherits everything about trials and storage from
:class:`~llmbo.study.Study`: ask / tell / fail / release / run / run_until, leases and
heartbeat, history and best (resume rules in :mod:`llmbo.study.core` and RELIABILITY.md).

Numerical faults: if the surrogate's fit (or the acquisition on its model) fails
numerically, the Bayesian proposer falls back to the surrogate's own fallback (for a deep
kernel: a GP on its frozen embeddings, i.e. the ``static`` surrogate of the same model),
then to a random choice; ``last_fit["fallback"]`` names the fallback used.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from llmbo.acquisition import AcquisitionConfig, acquisition_from_settings
from llmbo.encoders.transformer import EncoderConfig
from llmbo.errors import InputError, StudyError, StudySettingsError
from llmbo.presets import DEFAULT_PRESET, PresetChoice, resolve_surrogate
from llmbo.proposers import BayesianProposer, Proposer, RandomProposer, proposer_from_config
from llmbo.space import CandidateSpace
from llmbo.storage import BaseStorage, get_storage
from llmbo.study import Objective, Study, stored_proposer_config
from llmbo.study.settings import flatten_settings
from llmbo.surrogates.base import SURROGATES, Surrogate
from llmbo.surrogates.config import SurrogateConfig, surrogate_config
from llmbo.surrogates.factory import uses_encoder

logger = logging.getLogger("llmbo.optimizer")

__all__ = ["Objective", "Optimizer", "TableObjective"]


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


def _resolve_spec(
    surrogate: str | SurrogateConfig,
    model: str | None,
    soft_tokens: int | None,
    device: str | None,
) -> SurrogateConfig:
    """The surrogate's config with the transformer options applied (to surrogates that
    read texts with one; the others do not take them)."""
    spec = surrogate_config(surrogate) if isinstance(surrogate, str) else surrogate
    SURROGATES.get(spec.name)  # validate the name early (clear error)
    if not uses_encoder(spec):
        if model is not None or soft_tokens is not None:
            logger.debug("model/soft_tokens do not apply to the %s surrogate", spec.name)
        return spec
    encoder = spec.encoder  # type: ignore[attr-defined]
    if model is not None:
        encoder = replace(encoder, model=model)
    if device is not None:
        encoder = replace(encoder, device=device)
    spec = replace(spec, encoder=encoder)  # type: ignore[type-var]
    if soft_tokens is not None:
        spec = replace(spec, soft_tokens=int(soft_tokens))  # type: ignore[type-var]
    return spec


def _stored_settings_of(
    storage: BaseStorage, study_name: str, surrogate: str
) -> tuple[SurrogateConfig, AcquisitionConfig] | None:
    """The surrogate config and acquisition of stored study ``study_name``, when it exists
    and uses the surrogate ``surrogate`` (else ``None``: the usual checks then apply)."""
    if study_name not in storage.study_names():
        return None
    config = stored_proposer_config(storage.load_study(study_name).config)
    if config.get("name") != "bayesian" or config["surrogate"].get("name") != surrogate:
        return None
    try:
        proposer = proposer_from_config(config)
    except StudyError:
        return None
    assert isinstance(proposer, BayesianProposer) and proposer.spec is not None
    return proposer.spec, proposer.acquisition


def _make_proposer(
    surrogate: str | SurrogateConfig | Surrogate,
    acquisition: AcquisitionConfig,
    min_observations: int,
    *,
    model: str | None,
    soft_tokens: int | None,
    device: str | None,
    check_model: bool,
    progress: bool,
) -> Proposer:
    if isinstance(surrogate, Surrogate):
        return BayesianProposer(
            surrogate, acquisition, min_observations=min_observations, progress=progress
        )
    spec = _resolve_spec(surrogate, model, soft_tokens, device)
    if spec.name.lower() == "random":
        return RandomProposer()
    if check_model and uses_encoder(spec):
        # A missing model fails now, not after the first measurements were told.
        from llmbo.encoders.transformer import check_model_available

        check_model_available(spec.encoder.model)
    return BayesianProposer(spec, acquisition, min_observations=min_observations, progress=progress)


class Optimizer(Study):
    """Bayesian optimisation over a finite pool of text candidates.

    Args:
        space: The candidates.
        surrogate: A registered preset (:data:`llmbo.presets.PRESETS`): the default
            ``"components-or-lora"`` (a GP on the components when every template column is
            categorical, else the LoRA deep kernel; the choice is logged), ``"lora"``,
            ``"projection"``, ``"static"``, ``"morgan"``, ``"components"``, ``"onehot"``,
            ``"drfp"``, ``"random"``...; presets read the columns they need from the table
            (:meth:`~llmbo.presets.TableColumns.detect`). Or another registered surrogate's
            name, its config (:func:`~llmbo.surrogates.config.surrogate_config`), or a
            prepared :class:`Surrogate` instance (reused, e.g. across benchmark seeds).
        model: Transformer for LLM surrogates (``"minilm"``: the packaged default).
        acquisition: ``"logei"`` (default), ``"ucb"``, ``"ts"`` (with the preset's settings,
            e.g. outcome power 2) or an :class:`AcquisitionConfig` (used as given).
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

    ``last_fit`` holds the last ask's ``seconds``, ``n_train``, training ``losses``, the
    ``fallback`` used (``None`` when the requested model worked) and the ``fitted`` model
    (a :class:`~llmbo.surrogates.base.FittedSurrogate` or ``None``), e.g. to inspect the GP
    from a :meth:`run` callback.
    """

    def __init__(
        self,
        space: CandidateSpace,
        surrogate: str | SurrogateConfig | Surrogate = DEFAULT_PRESET,
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
        proposer: Proposer | None = None,
    ) -> None:
        if not isinstance(space, CandidateSpace):
            raise InputError(f"space must be a CandidateSpace, got {type(space).__name__}.")
        if (
            isinstance(min_observations, bool)
            or not isinstance(min_observations, int | np.integer)
            or min_observations < 1
        ):
            raise InputError(f"min_observations must be an integer >= 1, got {min_observations!r}.")
        self.acquisition = (
            acquisition
            if isinstance(acquisition, AcquisitionConfig)
            else AcquisitionConfig(name=acquisition)  # type: ignore[arg-type]
        )
        #: The preset ``surrogate`` named (``None`` for a config, an instance or a proposer).
        self.preset: PresetChoice | None = None
        if proposer is None and isinstance(surrogate, str):
            self.preset = resolve_surrogate(surrogate, space)
            surrogate = self.preset.spec
            if storage is not None and study_name is not None:
                storage = get_storage(storage)
                stored = _stored_settings_of(storage, study_name, self.preset.spec.name)
                if stored is not None:
                    # An existing study named by its preset continues with the settings it
                    # was created with (presets may choose more than they did then).
                    surrogate, kept = stored
                    self.preset = replace(self.preset, spec=surrogate, acquisition={})
                    if not isinstance(acquisition, AcquisitionConfig):
                        # The stored settings under the function asked for (another
                        # function is refused by the study's checks).
                        acquisition = replace(kept, name=self.acquisition.name)
                    self.acquisition = acquisition
            if not isinstance(acquisition, AcquisitionConfig):
                # The preset's acquisition settings (e.g. outcome power 2) unless the
                # caller passed a whole AcquisitionConfig.
                self.acquisition = acquisition_from_settings(
                    self.acquisition, self.preset.acquisition
                )
        self.min_observations = int(min_observations)
        if proposer is None:
            proposer = _make_proposer(
                surrogate,
                self.acquisition,
                self.min_observations,
                model=model,
                soft_tokens=soft_tokens,
                device=device,
                check_model=check_model,
                progress=progress,
            )
        super().__init__(
            space,
            proposer,
            maximize=maximize,
            seed=seed,
            storage=storage,
            study_name=study_name,
            progress=progress,
            lease_seconds=lease_seconds,
            heartbeat_seconds=heartbeat_seconds,
        )

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
        candidates are offered again; ``PENDING`` suggestions stay pending. Studies
        written by llmbo 0.1.0 (before proposers) open too.

        Settings that run foreign code are never taken from the stored data alone: a study
        created with ``EncoderConfig(trust_remote_code=True)`` is only reopened when this
        call passes ``trust_remote_code=True`` too (anyone who can write to the study file or
        database could otherwise make this process run Python from the model's folder).
        """
        store = get_storage(storage)
        record = store.load_study(study_name)
        config = stored_proposer_config(record.config)
        trusting = [
            key
            for key, value in flatten_settings(config).items()
            if key.endswith("trust_remote_code") and value is not False
        ]
        if trusting and not trust_remote_code:
            model = flatten_settings(config).get(trusting[0].replace("trust_remote_code", "model"))
            raise StudySettingsError(
                f"Study {study_name!r} asks to run the Python code that comes with model "
                f"{model!r} (trust_remote_code), and llmbo never takes that from stored data. "
                "If you trust that model folder, say so at this call: "
                "Optimizer.load(..., trust_remote_code=True), or --trust-remote-code."
            )
        if "records" not in record.space:
            raise StudyError(
                f"Study {study_name!r} does not store its space; rebuild the Optimizer with the space."
            )
        space = CandidateSpace.from_dict(record.space)
        try:
            proposer = proposer_from_config(config)
        except StudyError as exc:
            raise StudyError(f"Study {study_name!r}: {exc}") from exc
        if isinstance(proposer, BayesianProposer):
            assert proposer.spec is not None
            proposer.progress = progress
            return cls(
                space,
                proposer.spec,
                acquisition=proposer.acquisition,
                maximize=record.direction == "maximize",
                seed=record.seed,
                min_observations=proposer.min_observations,
                device=device,
                storage=store,
                study_name=study_name,
                progress=progress,
                lease_seconds=lease_seconds,
                heartbeat_seconds=heartbeat_seconds,
                check_model=check_model,
            )
        return cls(
            space,
            maximize=record.direction == "maximize",
            seed=record.seed,
            storage=store,
            study_name=study_name,
            progress=progress,
            lease_seconds=lease_seconds,
            heartbeat_seconds=heartbeat_seconds,
            proposer=proposer,
        )

    # ------------------------------------------------------------------ facade
    @property
    def study(self) -> Any:
        """The stored study record (id, name, seed, direction, stored settings)."""
        return self.record

    @property
    def spec(self) -> SurrogateConfig | None:
        """The surrogate spec (``None`` for a surrogate instance or the random proposer)."""
        return getattr(self.proposer, "spec", None)

    @property
    def surrogate(self) -> Surrogate:
        """The surrogate (built lazily: loading a transformer takes seconds)."""
        if not isinstance(self.proposer, BayesianProposer):
            from llmbo.surrogates.random import RandomSurrogate

            return RandomSurrogate()
        return self.proposer.surrogate

    @property
    def surrogate_name(self) -> str:
        return self.proposer.label

    @property
    def last_fit(self) -> dict[str, Any]:
        """Diagnostics of the last ask (see the class docstring)."""
        return self.last_info

    def encoder_config(self) -> EncoderConfig | None:
        return getattr(self.spec, "encoder", None)
