"""Numeric columns as features, log-scaled where they span decades (standard BO inputs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from llmbo.encoders.base import FEATURIZERS, Featurizer
from llmbo.errors import InputError
from llmbo.space import CandidateSpace

__all__ = ["NumericFeaturizer"]

#: A positive column whose largest value is at least this many times its smallest is read
#: on a log scale by ``log="auto"``.
AUTO_LOG_RATIO = 10.0


@FEATURIZERS.register("numeric")
class NumericFeaturizer(Featurizer):
    """Numeric columns of the table, each mapped to ``[0, 1]`` over the pool.

    This is the input of "standard" BO over a parameter grid: a GP on the configuration
    itself, no text. Columns that are all positive and span at least a decade
    (:data:`AUTO_LOG_RATIO`; e.g. learning rate, rank, batch size) are log-transformed
    first, as BoTorch/Ax users declare ``log_scale=True`` for such parameters.

    Args:
        columns: Columns to use (default: every numeric, non-boolean column).
        log: Columns read on a log scale, or ``"auto"`` (see above).

    Output: ``N x len(columns)`` float64 tensor in ``[0, 1]`` (constant columns are 0).
    As side features of a deep kernel they get a Matérn-5/2 ARD kernel.
    """

    side_kernel = "matern-ard"

    def __init__(
        self, *, columns: Sequence[str] | None = None, log: Sequence[str] | str = "auto"
    ) -> None:
        if isinstance(columns, str):
            columns = [columns]
        self.columns = list(columns) if columns is not None else None
        self.log = log if isinstance(log, str) else list(log)
        if isinstance(self.log, str) and self.log != "auto":
            raise InputError(f"log takes column names or 'auto', got {log!r}.")
        self.log_columns_: list[str] | None = None

    def _columns(self, space: CandidateSpace) -> list[str]:
        frame = space.frame
        if self.columns is None:
            cols = [
                str(c)
                for c in frame.columns
                if c != space.id_column
                and pd.api.types.is_numeric_dtype(frame[c])
                and not pd.api.types.is_bool_dtype(frame[c])
            ]
            if not cols:
                raise InputError(
                    "NumericFeaturizer found no numeric columns in the space; pass columns=[...]."
                )
            return cols
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise InputError(
                f"NumericFeaturizer: column(s) {missing} are not in the table; available: "
                f"{list(map(str, frame.columns))}."
            )
        return list(self.columns)

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        columns = self._columns(space)
        blocks, logged = [], []
        for column in columns:
            values = pd.to_numeric(space.frame[column], errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(values).all():
                raise InputError(
                    f"NumericFeaturizer: column {column!r} has missing or non-numeric values; "
                    "choose numeric columns (columns=[...])."
                )
            if self._logs(column, values):
                if (values <= 0).any():
                    raise InputError(
                        f"NumericFeaturizer: column {column!r} has values <= 0 and cannot be "
                        "read on a log scale; leave it out of log=[...]."
                    )
                values = np.log(values)
                logged.append(column)
            low, high = values.min(), values.max()
            span = high - low
            blocks.append((values - low) / span if span > 0 else np.zeros_like(values))
        self.log_columns_ = logged
        return torch.from_numpy(np.stack(blocks, axis=1).astype(np.float64))

    def _logs(self, column: str, values: np.ndarray) -> bool:
        if self.log == "auto":
            return bool((values > 0).all() and values.max() >= AUTO_LOG_RATIO * values.min())
        return column in self.log
