"""Fixed featurizers for the baselines: DRFP, Morgan fingerprints, one-hot and component codes.

RDKit and drfp are optional (``pip install 'llmbo[chem]'``) and imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from llmbo._imports import require
from llmbo.encoders.base import FEATURIZERS, Featurizer
from llmbo.errors import InputError
from llmbo.space import CandidateSpace

__all__ = ["ComponentsFeaturizer", "DrfpFeaturizer", "MorganFeaturizer", "OneHotFeaturizer"]


def _column(space: CandidateSpace, column: str, who: str) -> pd.Series:
    if column not in space.frame.columns:
        raise InputError(
            f"{who} needs the column {column!r}, which the space does not have; available "
            f"columns: {list(map(str, space.frame.columns))}."
        )
    return space.frame[column]


def _text_values(space: CandidateSpace, column: str, who: str) -> list[str]:
    series = _column(space, column, who)
    missing = series.isna().to_numpy()
    if missing.any():
        bad = [space.ids[i] for i in np.flatnonzero(missing)[:5]]
        raise InputError(
            f"{who}: column {column!r} has missing values (candidates {bad}); write an empty "
            "string for 'no component' or drop those rows."
        )
    return [str(v) for v in series]


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _columns_arg(columns: str | Sequence[str] | None, who: str) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        return (columns,)
    out = tuple(columns)
    if not out or not all(isinstance(c, str) for c in out):
        raise InputError(
            f"{who}: columns must be a non-empty list of column names, got {columns!r}."
        )
    return out


@FEATURIZERS.register("drfp")
class DrfpFeaturizer(Featurizer):
    """Differential reaction fingerprint (DRFP; Probst et al., Digital Discovery 2022).

    Args:
        column: Column holding reaction SMILES (``reactants>agents>products``).
        n_bits: Folded fingerprint length.
        radius: Largest substructure radius (3 is the drfp default, "DRFP6").

    Output: ``N x n_bits`` float64 tensor of 0/1.
    """

    binary = True

    def __init__(self, *, column: str = "rxn", n_bits: int = 2048, radius: int = 3) -> None:
        self.column = column
        self.n_bits = n_bits
        self.radius = radius

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        n_bits = _positive_int(self.n_bits, "n_bits")
        radius = _positive_int(self.radius, "radius")
        fingerprint = require("drfp.fingerprint", "The DRFP featurizer")
        require("rdkit", "The DRFP featurizer")
        from rdkit import Chem, rdBase

        reactions = _text_values(space, self.column, "DrfpFeaturizer")
        out = np.zeros((len(reactions), n_bits), dtype=np.float64)
        cache: dict[str, np.ndarray] = {}
        for i, rxn in enumerate(reactions):
            if rxn in cache:
                out[i] = cache[rxn]
                continue
            sides = rxn.split(">")
            if len(sides) != 3:
                raise InputError(
                    f"DrfpFeaturizer: column {self.column!r} of candidate {space.ids[i]!r} is "
                    f"not a reaction SMILES (reactants>agents>products): {rxn[:120]!r}."
                )
            # drfp silently skips molecules it cannot parse; refuse them instead.
            with rdBase.BlockLogs():
                for part in ".".join(sides).split("."):
                    if part and Chem.MolFromSmiles(part) is None:
                        raise InputError(
                            f"DrfpFeaturizer: column {self.column!r} of candidate "
                            f"{space.ids[i]!r} holds a molecule RDKit cannot parse: {part[:120]!r}."
                        )
                (fp,) = fingerprint.DrfpEncoder.encode([rxn], n_folded_length=n_bits, radius=radius)
            cache[rxn] = out[i] = fp
        return torch.from_numpy(out)


@FEATURIZERS.register("morgan")
class MorganFeaturizer(Featurizer):
    """Morgan (ECFP-like) bit fingerprints of SMILES columns, concatenated column by column.

    Args:
        columns: The SMILES columns, in the order their fingerprints are concatenated
            (e.g. ``ReactionPool.smiles_columns``). An empty SMILES gives an all-zero block.
        radius: Morgan radius (2 corresponds to ECFP4).
        n_bits: Bits per column.

    Output: ``N x (len(columns) * n_bits)`` float64 tensor of 0/1.
    """

    binary = True

    def __init__(
        self, *, columns: str | Sequence[str] | None = None, radius: int = 2, n_bits: int = 2048
    ) -> None:
        self.columns = columns
        self.radius = radius
        self.n_bits = n_bits

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        columns = _columns_arg(self.columns, "MorganFeaturizer")
        if columns is None:
            raise InputError(
                "MorganFeaturizer needs columns=[...] naming the SMILES columns to fingerprint "
                "(for a reaction pool: pool.smiles_columns)."
            )
        n_bits = _positive_int(self.n_bits, "n_bits")
        radius = _positive_int(self.radius, "radius")
        require("rdkit", "The Morgan featurizer")
        from rdkit import Chem, rdBase
        from rdkit.Chem import rdFingerprintGenerator

        generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
        blocks = []
        for column in columns:
            smiles = _text_values(space, column, "MorganFeaturizer")
            block = np.zeros((len(smiles), n_bits), dtype=np.float64)
            cache: dict[str, np.ndarray] = {}
            for i, s in enumerate(smiles):
                if s not in cache:
                    with rdBase.BlockLogs():
                        mol = Chem.MolFromSmiles(s)
                    if mol is None:
                        raise InputError(
                            f"MorganFeaturizer: column {column!r} of candidate {space.ids[i]!r} "
                            f"holds a SMILES RDKit cannot parse: {s[:120]!r}."
                        )
                    cache[s] = generator.GetFingerprintAsNumPy(mol).astype(np.float64)
                block[i] = cache[s]
            blocks.append(block)
        return torch.from_numpy(np.concatenate(blocks, axis=1))


@FEATURIZERS.register("onehot")
class OneHotFeaturizer(Featurizer):
    """One-hot encoding of categorical columns, concatenated column by column.

    Args:
        columns: Columns to encode. By default every object, string, categorical or
            boolean column except the space's id column. Columns that are unique per row
            (such as ``rxn`` in the reaction pools) then only encode identity, so for
            reaction pools pass the component columns explicitly.

    Categories are the sorted distinct values (as text) of each column in the space.
    Output: ``N x (total number of categories)`` float64 tensor of 0/1.
    """

    binary = True

    def __init__(self, *, columns: str | Sequence[str] | None = None) -> None:
        self.columns = columns

    def _default_columns(self, space: CandidateSpace) -> tuple[str, ...]:
        frame = space.frame
        cols = tuple(
            str(c)
            for c in frame.columns
            if c != space.id_column
            and (
                pd.api.types.is_object_dtype(frame[c])
                or pd.api.types.is_string_dtype(frame[c])
                or isinstance(frame[c].dtype, pd.CategoricalDtype)
                or pd.api.types.is_bool_dtype(frame[c])
            )
        )
        if not cols:
            raise InputError(
                "OneHotFeaturizer found no categorical columns in the space; pass columns=[...]."
            )
        return cols

    def _codes(self, space: CandidateSpace) -> list[tuple[np.ndarray, int]]:
        """Per column: the category code of every row and the number of categories."""
        columns = _columns_arg(self.columns, type(self).__name__) or self._default_columns(space)
        out = []
        for column in columns:
            series = _column(space, column, type(self).__name__)
            text = series.astype(object).where(series.notna(), "<missing>").astype(str)
            categories = sorted(text.unique())
            codes = np.asarray(pd.Categorical(text, categories=categories).codes, dtype=np.int64)
            out.append((codes, len(categories)))
        return out

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        return self._one_hot(self._codes(space))

    @staticmethod
    def _one_hot(coded: list[tuple[np.ndarray, int]]) -> torch.Tensor:
        blocks = []
        for codes, size in coded:
            block = np.zeros((len(codes), size), dtype=np.float64)
            block[np.arange(len(codes)), codes] = 1.0
            blocks.append(block)
        return torch.from_numpy(np.concatenate(blocks, axis=1))


@FEATURIZERS.register("components")
class ComponentsFeaturizer(OneHotFeaturizer):
    """One-hot blocks of categorical columns followed by one integer code per column.

    The features of :func:`~llmbo.surrogates.kernels.component_kernel`: a Tanimoto kernel
    reads the one-hot part (the share of components two candidates have in common) and one
    categorical kernel per column reads that column's code, so each component gets its own
    learned weight. Same arguments as :class:`OneHotFeaturizer`.

    Output: ``N x (total categories + number of columns)`` float64 tensor. After
    :meth:`featurize`, ``n_components_`` holds the number of columns.
    """

    binary = False

    def __init__(self, *, columns: str | Sequence[str] | None = None) -> None:
        super().__init__(columns=columns)
        self.n_components_: int | None = None

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        coded = self._codes(space)
        codes = np.stack([c for c, _ in coded], axis=1).astype(np.float64)
        self.n_components_ = codes.shape[1]
        return torch.cat([self._one_hot(coded), torch.from_numpy(codes)], dim=1)
