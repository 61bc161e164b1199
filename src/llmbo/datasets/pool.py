"""A finite pool of candidates with measured values, and what its tables tell a surrogate.

:class:`CandidatePool` is the form every packaged pool takes (see :mod:`llmbo.datasets`),
reactions and molecules alike: the table, its named text templates, the direction of its
target, and :meth:`CandidatePool.space` to turn it into a
:class:`~llmbo.space.CandidateSpace`. :data:`TEMPLATE_SEPARATORS` and
:func:`pool_featurizer_options` say how the templates split into component parts and which
columns the fixed featurizers read, for the CLI and the benchmark methods alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmbo.errors import InputError
from llmbo.space import CandidateSpace

__all__ = [
    "ID_COLUMN",
    "POOL_KINDS",
    "TARGET_COLUMN",
    "TEMPLATE_SEPARATORS",
    "CandidatePool",
    "PoolKind",
    "ReactionPool",
    "content_ids",
    "pool_featurizer_options",
]

#: Column holding each reaction's stable unique id (the reaction pools' id column).
ID_COLUMN = "reaction_id"
#: Column holding the measured value of the reaction pools.
TARGET_COLUMN = "yield"

#: What a pool's candidates are: reactions made of categorical components (each with a
#: SMILES column, plus the reaction SMILES ``rxn``), or single molecules (one SMILES each).
PoolKind = Literal["reaction", "molecule"]
POOL_KINDS: tuple[PoolKind, ...] = ("reaction", "molecule")

#: The separator between component parts in each pool template (for segment pooling).
#: ``reaction``: the molecules of a reaction SMILES (the last part holds ``>>product``).
TEMPLATE_SEPARATORS = {"procedure": "\n", "names": "; ", "reaction": "."}


@dataclass
class CandidatePool:
    """A finite pool of candidates with measured values, ready to become a candidate space.

    Attributes:
        name: Pool name (``"bh1"`` ... ``"bh5"``, ``"suzuki"``, ``"esol"``, ``"freesolv"``).
        description: What the candidates are and where the data comes from (with citation).
        frame: One row per candidate with a stable unique id (``id_column``) and the target.
            Reaction pools: the component SMILES, ``rxn`` (the reaction SMILES) and a
            ``*_name`` column per component. Molecule pools: ``smiles`` and ``name``.
        templates: Named text templates over ``frame``'s columns (reaction pools:
            ``"procedure"``, ``"names"``, ``"reaction"``; molecule pools: ``"smiles"``,
            ``"names"``).
        smiles_columns: The columns holding one SMILES each, fingerprinted by the Morgan
            baseline: one per reaction component, or the molecule's.
        target: Column with the measured value (``"yield"`` for reactions).
        maximize: Whether a larger value is better; ``False`` for a pool that is minimised
            (the benchmark protocol then starts above the median and counts the lowest 5 %).
        kind: ``"reaction"`` or ``"molecule"`` (see :data:`PoolKind`); benchmark methods
            that read reaction components apply to reaction pools only.
        default_template: The template used when none is named.
        id_column: Column holding the candidate ids (``"reaction_id"`` for reactions).
    """

    name: str
    description: str
    frame: pd.DataFrame
    templates: dict[str, str]
    smiles_columns: tuple[str, ...] = ()
    target: str = TARGET_COLUMN
    maximize: bool = True
    kind: PoolKind = "reaction"
    default_template: str = "names"
    id_column: str = ID_COLUMN

    def __post_init__(self) -> None:
        for col in (self.id_column, self.target, *self.smiles_columns):
            if col not in self.frame.columns:
                raise InputError(f"Pool {self.name!r} has no column {col!r}.")
        if self.frame[self.id_column].duplicated().any():
            raise InputError(f"Pool {self.name!r} has duplicate candidate ids.")
        if self.kind not in POOL_KINDS:
            raise InputError(f"Pool {self.name!r}: kind must be one of {POOL_KINDS}.")
        if self.default_template not in self.templates:
            raise InputError(
                f"Pool {self.name!r}: default template {self.default_template!r} is not one of "
                f"{sorted(self.templates)}."
            )
        self.frame = self.frame.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        direction = "maximise" if self.maximize else "minimise"
        return (
            f"CandidatePool({self.name!r}, {len(self)} {self.kind}s, {direction} "
            f"{self.target!r}, templates={list(self.templates)})"
        )

    def space(self, template: str | None = None) -> CandidateSpace:
        """The pool as a candidate space rendered with the named template (default:
        :attr:`default_template`).

        Rows keep the pool's order, so ``space.ids[i]`` is ``frame[id_column][i]`` and
        :attr:`values` ``[i]`` is its measured value.
        """
        template = self.default_template if template is None else template
        if template not in self.templates:
            raise InputError(
                f"Pool {self.name!r} has no template {template!r}; choose one of "
                f"{sorted(self.templates)}."
            )
        return CandidateSpace(
            self.frame, self.templates[template], id_column=self.id_column, name=self.name
        )

    @property
    def values(self) -> np.ndarray:
        """Measured values (float64, shape ``N``), aligned with the rows of :meth:`space`."""
        return self.frame[self.target].to_numpy(dtype=np.float64, copy=True)

    @property
    def ids(self) -> list[str]:
        """Candidate ids in row order."""
        return self.frame[self.id_column].astype(str).tolist()


def content_ids(frame: pd.DataFrame, columns: Sequence[str], prefix: str) -> list[str]:
    """Stable ids ``"<prefix>-<12 hex>"`` of the rows of ``frame``, hashed from ``columns``.

    Derived from the values as written in the data (not from RDKit output, which may change
    between RDKit versions), so ids survive reordering and upgrades.
    """
    out = []
    for row in frame[list(columns)].itertuples(index=False):
        digest = hashlib.sha1("\x1f".join(row).encode("utf-8")).hexdigest()[:12]
        out.append(f"{prefix}-{digest}")
    return out


#: The former name of :class:`CandidatePool`, from when every pool was a reaction pool;
#: kept so that existing imports and annotations work.
ReactionPool = CandidatePool


def pool_featurizer_options(pool: CandidatePool, featurizer: str) -> dict[str, Any]:
    """Options of a fixed featurizer (``drfp``, ``morgan``, ``onehot``, ``components``) on ``pool``.

    DRFP reads the reaction SMILES (``rxn``); Morgan bits and one-hot/component codes are taken per
    component column (the reaction SMILES is unique per row, so it would only encode identity).
    On a molecule pool only ``morgan`` applies (of the molecule's SMILES): there is no reaction
    SMILES, and one-hot codes of a column that is unique per row would only encode identity.

    Raises:
        InputError: The featurizer does not apply to the pool.
    """
    if featurizer in ("drfp", "onehot", "components") and pool.kind != "reaction":
        what = (
            "the reaction SMILES"
            if featurizer == "drfp"
            else "the categorical components of reactions"
        )
        raise InputError(
            f"The {featurizer} featurizer reads {what}; {pool.name!r} is a {pool.kind} pool. "
            "Use morgan (fingerprints of its SMILES) instead."
        )
    if featurizer == "drfp":
        return {"column": "rxn"}
    if featurizer in ("morgan", "onehot", "components"):
        if not pool.smiles_columns:
            raise InputError(f"Pool {pool.name!r} declares no SMILES columns.")
        return {"columns": list(pool.smiles_columns)}
    raise InputError(
        f"No pool columns are known for featurizer {featurizer!r}; choose drfp, morgan, onehot "
        "or components."
    )
