"""A finite pool of reactions with measured yields, and what its tables tell a surrogate.

:class:`ReactionPool` is the form every packaged pool takes (see :mod:`llmbo.datasets`):
the table, its named text templates, and :meth:`ReactionPool.space` to turn it into a
:class:`~llmbo.space.CandidateSpace`. :data:`TEMPLATE_SEPARATORS` and
:func:`pool_featurizer_options` say how the templates split into component parts and which
columns the fixed featurizers read, for the CLI and the benchmark methods alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmbo.errors import InputError
from llmbo.space import CandidateSpace

__all__ = [
    "ID_COLUMN",
    "TARGET_COLUMN",
    "TEMPLATE_SEPARATORS",
    "ReactionPool",
    "pool_featurizer_options",
]

#: Column holding each reaction's stable unique id.
ID_COLUMN = "reaction_id"
#: Column holding the measured value.
TARGET_COLUMN = "yield"

#: The separator between component parts in each pool template (for segment pooling).
#: ``reaction``: the molecules of a reaction SMILES (the last part holds ``>>product``).
TEMPLATE_SEPARATORS = {"procedure": "\n", "names": "; ", "reaction": "."}


@dataclass
class ReactionPool:
    """A finite pool of reactions with measured yields, ready to become a candidate space.

    Attributes:
        name: Pool name (``"bh1"`` ... ``"bh5"``, ``"suzuki"``).
        description: What the reactions are and where the data comes from.
        frame: One row per reaction: the component SMILES, ``rxn`` (reaction SMILES),
            the target, a stable unique ``reaction_id`` and a ``*_name`` column per component.
        templates: Named text templates (``"procedure"``, ``"names"``) over ``frame``'s columns.
        smiles_columns: The columns holding one component's SMILES each (for fingerprints).
        target: Column with the measured value (``"yield"``).
    """

    name: str
    description: str
    frame: pd.DataFrame
    templates: dict[str, str]
    smiles_columns: tuple[str, ...] = ()
    target: str = TARGET_COLUMN
    id_column: str = field(default=ID_COLUMN, init=False)

    def __post_init__(self) -> None:
        for col in (self.id_column, self.target):
            if col not in self.frame.columns:
                raise InputError(f"Pool {self.name!r} has no column {col!r}.")
        if self.frame[self.id_column].duplicated().any():
            raise InputError(f"Pool {self.name!r} has duplicate reaction ids.")
        self.frame = self.frame.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return (
            f"ReactionPool({self.name!r}, {len(self)} reactions, templates={list(self.templates)})"
        )

    def space(self, template: str = "procedure") -> CandidateSpace:
        """The pool as a candidate space rendered with the named template.

        Rows keep the pool's order, so ``space.ids[i]`` is ``frame.reaction_id[i]`` and
        :attr:`values` ``[i]`` is its yield.
        """
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
        """Reaction ids in row order."""
        return self.frame[self.id_column].astype(str).tolist()


def pool_featurizer_options(pool: ReactionPool, featurizer: str) -> dict[str, Any]:
    """Options of a fixed featurizer (``drfp``, ``morgan``, ``onehot``, ``components``) on ``pool``.

    DRFP reads the reaction SMILES (``rxn``); Morgan bits and one-hot/component codes are taken per
    component column (the reaction SMILES is unique per row, so it would only encode identity).
    """
    if featurizer == "drfp":
        return {"column": "rxn"}
    if featurizer in ("morgan", "onehot", "components"):
        if not pool.smiles_columns:
            raise InputError(f"Pool {pool.name!r} declares no component columns.")
        return {"columns": list(pool.smiles_columns)}
    raise InputError(
        f"No pool columns are known for featurizer {featurizer!r}; choose drfp, morgan, onehot "
        "or components."
    )
