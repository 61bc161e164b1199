"""BayBE as a proposer: the Bayesian optimisation package chemists already use, as a peer.

Each proposal builds a BayBE ``Campaign`` over the pool's rows (a discrete search space:
one ``SubstanceParameter`` per SMILES column, encoded with a chemical fingerprint, ECFP by
default; one ``CategoricalParameter`` per other searched column), tells it the measured
rows and asks ``recommend(batch_size=n)`` with BayBE's own default recommender. BayBE
always maximises the observations' values, which are oriented so that larger is better
(the study negates them when minimising), so the study's direction is respected.

A recommendation that is not an available pool row (a duplicate, or a combination held by
no free row) is not an experiment: it is counted in ``info["misses"]`` and replaced by a
random available row. BayBE draws from the global Python, NumPy and torch generators; they
are seeded from the proposal's seed inside BayBE's ``Settings(random_seed=...)`` and
``torch.random.fork_rng``, which restore them afterwards.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmbo._imports import require
from llmbo.errors import InputError, StudyError
from llmbo.proposers.base import PROPOSERS, Observations, Proposal, Proposer
from llmbo.proposers.random import random_rows
from llmbo.space import CandidateSpace

logger = logging.getLogger("llmbo.proposers.baybe")

__all__ = ["BayBEProposer"]

#: The target's name in BayBE's tables (not a column name of any packaged pool).
_TARGET = "llmbo_value"
#: BayBE's label of an empty SMILES (a missing component; its labels must not be empty).
_EMPTY = "<empty>"


class BayBEProposer(Proposer):
    """A BayBE campaign over the pool's rows, with BayBE's default recommender.

    Args:
        smiles_columns: Columns holding one SMILES each, searched as BayBE substances with
            the chemical ``encoding``.
        columns: Other searched columns, each a BayBE categorical parameter (one-hot).
        encoding: BayBE's substance encoding (``"ECFP"`` default; ``"MORDRED"``,
            ``"RDKIT2DDESCRIPTORS"``... any name of ``baybe.parameters.SubstanceEncoding``).

    A column with a single value in the pool carries no information and is left out.
    """

    name = "baybe"

    def __init__(
        self,
        smiles_columns: Sequence[str] = (),
        columns: Sequence[str] = (),
        *,
        encoding: str = "ECFP",
    ) -> None:
        self.smiles_columns = [str(c) for c in smiles_columns]
        self.columns = [str(c) for c in columns]
        if not self.smiles_columns and not self.columns:
            raise InputError("BayBEProposer needs at least one SMILES column or other column.")
        both = sorted(set(self.smiles_columns) & set(self.columns))
        if both:
            raise InputError(f"Columns {both} are named both as SMILES and as categorical.")
        self.encoding = str(encoding).upper()
        self._prepared: tuple[str, Any, list[str], list[tuple[str, ...]]] | None = None

    # ---------------------------------------------------------------- search space
    def _labels(self, space: CandidateSpace) -> tuple[pd.DataFrame, list[Any]]:
        """Each pool row's BayBE labels (one column per searched column) and the
        parameters; columns with one value are left out."""
        baybe_parameters = require("baybe.parameters", "The baybe proposer")
        frame = space.frame
        missing = [c for c in (*self.smiles_columns, *self.columns) if c not in frame.columns]
        if missing:
            raise InputError(f"BayBE columns {missing} are not in the table.")
        labels: dict[str, pd.Series] = {}
        parameters = []
        for column in self.smiles_columns:
            raw = frame[column].fillna("").astype(str)
            names = raw.where(raw != "", _EMPTY)
            if names.nunique() < 2:
                logger.info("BayBE leaves out column %r: one value in the pool.", column)
                continue
            names = _merge_same_substances(names, raw)
            data = {name: ("" if name == _EMPTY else name) for name in names.unique()}
            parameters.append(
                baybe_parameters.SubstanceParameter(name=column, data=data, encoding=self.encoding)
            )
            labels[column] = names
        for column in self.columns:
            names = frame[column].astype(str)
            if names.nunique() < 2:
                logger.info("BayBE leaves out column %r: one value in the pool.", column)
                continue
            parameters.append(
                baybe_parameters.CategoricalParameter(
                    name=column, values=sorted(names.unique()), encoding="OHE"
                )
            )
            labels[column] = names
        if not parameters:
            raise InputError(
                "Every BayBE column has a single value in the pool; nothing to search."
            )
        return pd.DataFrame(labels), parameters

    def _search_space(self, space: CandidateSpace) -> tuple[Any, list[str], list[tuple[str, ...]]]:
        """BayBE's search space over the pool's distinct rows, its parameter names and each
        row's key (its labels in that order); cached for the last space."""
        digest = space.content_hash()
        if self._prepared is not None and self._prepared[0] == digest:
            return self._prepared[1:]
        searchspace = require("baybe.searchspace", "The baybe proposer")
        table, parameters = self._labels(space)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            built = searchspace.SearchSpace.from_dataframe(
                table.drop_duplicates().reset_index(drop=True), parameters
            )
        keys = [tuple(row) for row in table.itertuples(index=False)]
        self._prepared = (digest, built, list(table.columns), keys)
        return built, list(table.columns), keys

    def prepare(self, space: CandidateSpace, *, progress: bool = False) -> None:
        with _own_default_dtype():
            self._search_space(space)

    # ---------------------------------------------------------------- proposing
    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        # BayBE switches torch's default dtype to float64 for the whole process; the
        # surrogates of other studies in this process must not see that.
        with _own_default_dtype():
            return self._propose(space, observed, n, seed=seed)

    def _propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        baybe = require("baybe", "The baybe proposer")
        from baybe.settings import Settings
        from baybe.targets import NumericalTarget

        built, columns, keys = self._search_space(space)
        campaign = baybe.Campaign(
            built,
            NumericalTarget(name=_TARGET).to_objective(),
            allow_recommending_already_measured=False,
            allow_recommending_pending_experiments=False,
        )
        if len(observed):
            measured = _rows(keys, observed.index, columns)
            measured[_TARGET] = np.asarray(observed.values, dtype=np.float64)
            campaign.add_measurements(measured)
        pending = _rows(keys, observed.pending, columns) if len(observed.pending) else None
        with (
            torch.random.fork_rng(devices=[]),
            Settings(random_seed=int(seed) % (2**32)),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", UserWarning)
            recommended = campaign.recommend(batch_size=n, pending_experiments=pending)
        free: dict[tuple[str, ...], list[int]] = {}
        for row in observed.available:
            free.setdefault(keys[int(row)], []).append(int(row))
        chosen: list[int] = []
        misses = 0
        for key in recommended[columns].astype(str).itertuples(index=False):
            rows = free.get(tuple(key))
            if rows:
                chosen.append(rows.pop(0))
            else:
                misses += 1
        if len(chosen) < n:
            rest = np.setdiff1d(observed.available, chosen)
            chosen += random_rows(rest, n - len(chosen), seed)
            logger.info(
                "BayBE recommended %d configuration(s) that are not available pool rows; "
                "replaced at random.",
                misses,
            )
        return Proposal(chosen, {"n_train": len(observed), "misses": misses})

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "smiles_columns": list(self.smiles_columns),
            "columns": list(self.columns),
            "encoding": self.encoding,
        }


@contextmanager
def _own_default_dtype() -> Iterator[None]:
    """Restore torch's default dtype after the block (BayBE sets it to float64)."""
    dtype = torch.get_default_dtype()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)


def _merge_same_substances(names: pd.Series, raw: pd.Series) -> pd.Series:
    """``names`` with SMILES of the same molecule (BayBE's canonical form) under one label:
    BayBE refuses two labels for one substance."""
    from baybe.utils.chemistry import get_canonical_smiles

    first: dict[str, str] = {}
    relabel = {}
    for name, smiles in zip(names.unique(), raw[~names.duplicated()], strict=True):
        canonical = get_canonical_smiles(smiles) if smiles else ""
        relabel[name] = first.setdefault(canonical, name)
    return names.map(relabel)


def _rows(keys: list[tuple[str, ...]], index: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """BayBE's table of the pool rows ``index`` (their labels)."""
    return pd.DataFrame([keys[int(i)] for i in index], columns=columns)


@PROPOSERS.register("baybe")
def _from_config(config: dict[str, Any]) -> BayBEProposer:
    extra = sorted(set(config) - {"name", "smiles_columns", "columns", "encoding"})
    if extra:
        raise StudyError(f"The baybe proposer has no settings {extra}.")
    return BayBEProposer(
        config.get("smiles_columns", ()),
        config.get("columns", ()),
        encoding=config.get("encoding", "ECFP"),
    )
