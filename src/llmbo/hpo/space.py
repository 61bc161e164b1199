"""The LoRA hyperparameter grid as a candidate space, with prompts that explain it.

The default grid is the one of arXiv 2602.11171: rank x alpha/rank x dropout x batch size x
learning rate = 9 x 9 x 7 x 8 x 10 = 45,360 configurations. Each configuration becomes one
prompt, one line per statement, so the ``token`` surrogate can weigh statements separately:
the ``"knowledge"`` prompt states each hyperparameter's role, where its value sits in the
searched range, and the interactions that matter (alpha/rank sets the update scale,
learning rate x scale is the adapter's effective step, batch size trades steps for noise);
the ``"bare"`` prompt lists the values alone, ``r=8``, ``alpha=16``, ... one per line (the
"no prompt knowledge" ablation: the same structure, no explanation).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmbo.errors import InputError
from llmbo.space import CandidateSpace

__all__ = [
    "DEFAULT_CONFIGURATION",
    "PAPER_GRID",
    "PROMPTS",
    "TRAINING_FIELDS",
    "LoraSearchSpace",
    "lora_config_fields",
]

#: The grid of arXiv 2602.11171 (values chosen inside the ranges it states).
PAPER_GRID: dict[str, list[float]] = {
    "r": [1, 2, 4, 8, 16, 32, 64, 128, 256],
    "alpha_ratio": [0.5, 1, 2, 4, 8, 16, 32, 64, 128],
    "lora_dropout": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
    "batch_size": [2, 4, 8, 16, 32, 64, 128, 256],
    "learning_rate": [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3],
}
#: The usual hand-set LoRA configuration (r=8, alpha=16, dropout 0.05, batch 16, lr 1e-4).
DEFAULT_CONFIGURATION: dict[str, float] = {
    "r": 8,
    "alpha_ratio": 2,
    "lora_dropout": 0.05,
    "batch_size": 16,
    "learning_rate": 1e-4,
}
#: Training settings a trial reads besides ``peft.LoraConfig`` fields.
TRAINING_FIELDS = frozenset(
    {"batch_size", "learning_rate", "epochs", "weight_decay", "warmup_ratio", "max_length"}
)
#: The prompt templates: ``"knowledge"`` (roles, ranges, interactions) or ``"bare"``.
PROMPTS = ("knowledge", "bare")
#: Words for where a value sits in its searched range (log scale for spans >= 10x).
_LEVELS = ("very low", "low", "moderate", "high", "very high")


def lora_config_fields() -> frozenset[str]:
    """Field names of ``peft.LoraConfig`` (what a search may vary besides training)."""
    import peft

    return frozenset(f.name for f in dataclasses.fields(peft.LoraConfig))


def _numeric_values(name: str, values: Any) -> list[Any]:
    if isinstance(values, np.ndarray | pd.Series | pd.Index):
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InputError(
            f"Hyperparameter {name!r} needs a list of values, got {values!r}; e.g. "
            f"{name}=[1, 2, 4]."
        )
    if len(values) == 0:
        raise InputError(f"Hyperparameter {name!r} has an empty list of values; give at least one.")
    return [v.item() if isinstance(v, np.generic) else v for v in values]


@dataclass
class LoraSearchSpace:
    """The searched LoRA and training hyperparameters.

    Args:
        grid: Hyperparameter -> the values it may take. ``r``, ``alpha_ratio``
            (``lora_alpha / r``), ``lora_dropout``, ``batch_size`` and ``learning_rate``
            default to :data:`PAPER_GRID`; any other ``peft.LoraConfig`` field (e.g.
            ``target_modules``, ``use_rslora``) or training field (:data:`TRAINING_FIELDS`:
            ``epochs``, ``weight_decay``, ...) may be added. ``lora_alpha`` is derived
            (``r * alpha_ratio``) and cannot be given directly.
        fixed: Settings shared by every configuration (same names as ``grid``).
        prompt: ``"knowledge"`` (default) or ``"bare"``.
    """

    grid: dict[str, list[Any]] = field(default_factory=lambda: dict(PAPER_GRID))
    fixed: dict[str, Any] = field(default_factory=dict)
    prompt: Literal["knowledge", "bare"] = "knowledge"

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise InputError(f"prompt must be one of {PROMPTS}, got {self.prompt!r}.")
        if not isinstance(self.grid, Mapping) or not self.grid:
            raise InputError("The search grid needs at least one hyperparameter with values.")
        self.grid = {str(k): _numeric_values(str(k), v) for k, v in self.grid.items()}
        self.fixed = {
            str(k): v.item() if isinstance(v, np.generic) else v
            for k, v in dict(self.fixed).items()
        }
        known = (lora_config_fields() | TRAINING_FIELDS | {"alpha_ratio"}) - {"lora_alpha"}
        for name in [*self.grid, *self.fixed]:
            if name == "lora_alpha":
                raise InputError(
                    "lora_alpha is derived as r * alpha_ratio; search alpha_ratio instead."
                )
            if name not in known:
                close = sorted(k for k in known if k in name or name in k)
                hint = f" Did you mean {close}?" if close else ""
                raise InputError(
                    f"Unknown hyperparameter {name!r}: give a peft.LoraConfig field or one of "
                    f"{sorted(TRAINING_FIELDS | {'alpha_ratio'})}.{hint}"
                )
        both = sorted(set(self.grid) & set(self.fixed))
        if both:
            raise InputError(f"{both} are both searched (grid) and fixed; choose one.")
        for name in ("r", "alpha_ratio", "batch_size", "learning_rate"):
            for value in self._all_values(name):
                self._check_positive(name, value)
        for value in self._all_values("lora_dropout"):
            if not _is_number(value) or not 0 <= float(value) < 1:
                raise InputError(f"lora_dropout values must be numbers in [0, 1), got {value!r}.")

    def _all_values(self, name: str) -> list[Any]:
        """The values ``name`` takes: its grid list, or its fixed value."""
        if name in self.fixed:
            return [self.fixed[name]]
        return list(self.grid.get(name, []))

    @staticmethod
    def _check_positive(name: str, value: Any) -> None:
        if not _is_number(value) or not float(value) > 0 or not math.isfinite(float(value)):
            raise InputError(f"{name} values must be positive numbers, got {value!r}.")
        if name in ("r", "batch_size") and float(value) != int(float(value)):
            raise InputError(f"{name} values must be whole numbers, got {value!r}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraSearchSpace:
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def value(self, row: Mapping[str, Any], name: str, default: Any = None) -> Any:
        """A setting of a configuration row: searched, else fixed, else ``default``."""
        if name in row:
            return row[name]
        return self.fixed.get(name, default)

    def candidate_space(self) -> CandidateSpace:
        """Every configuration as a :class:`CandidateSpace` (one row each, with a prompt)."""
        space = CandidateSpace.from_grid(self.grid, self.render)
        return space

    def default_row(self, space: CandidateSpace) -> str | None:
        """The candidate id of :data:`DEFAULT_CONFIGURATION` in ``space`` (``None`` if the
        grid does not hold it)."""
        frame = space.frame
        mask = pd.Series(True, index=frame.index)
        for name, value in DEFAULT_CONFIGURATION.items():
            if name in frame.columns:
                mask &= frame[name].astype(float).sub(float(value)).abs() < 1e-12
            elif float(self.fixed.get(name, value)) != float(value):
                return None
        hits = frame.index[mask]
        return str(space.ids[int(frame.index.get_loc(hits[0]))]) if len(hits) else None

    # ------------------------------------------------------------------ prompts
    def render(self, row: Mapping[str, Any]) -> str:
        """The prompt of one configuration row (the space's text template)."""
        if self.prompt == "bare":
            return "\n".join(f"{k}={_fmt(v)}" for k, v in self.bare_items(row))
        return "\n".join(self.statements(row))

    def bare_items(self, row: Mapping[str, Any]) -> list[tuple[str, Any]]:
        items = []
        for name, value in row.items():
            if name == "alpha_ratio":
                items.append(("alpha", float(self.value(row, "r", 8)) * float(value)))
            else:
                items.append((name, value))
        return items

    def _level(self, name: str, value: Any) -> str:
        values = [float(v) for v in self.grid.get(name, []) if _is_number(v)]
        if len(values) < 2 or not _is_number(value):
            return ""
        low, high, x = min(values), max(values), float(value)
        if low > 0 and high / low >= 10:
            low, high, x = math.log(low), math.log(high), math.log(x)
        pos = (x - low) / (high - low) if high > low else 0.5
        word = _LEVELS[min(len(_LEVELS) - 1, int(pos * len(_LEVELS)))]
        return f" ({word} in the searched range)"

    def statements(self, row: Mapping[str, Any]) -> list[str]:
        """The lines of the knowledge prompt of one configuration."""
        r = float(self.value(row, "r", 8))
        ratio = float(self.value(row, "alpha_ratio", 2))
        lr = float(self.value(row, "learning_rate", 1e-4))
        batch = float(self.value(row, "batch_size", 16))
        dropout = float(self.value(row, "lora_dropout", 0.0))
        rs = bool(self.value(row, "use_rslora", False))
        scale = ratio * (math.sqrt(r) if rs else 1.0)
        lines = [
            f"LoRA rank r = {_fmt(r)}{self._level('r', r)}: adapter capacity; a larger rank "
            "fits more and costs more memory, and can overfit a small training set.",
            f"alpha = {_fmt(r * ratio)}, alpha/r = {_fmt(ratio)}{self._level('alpha_ratio', ratio)}"
            f": the update is multiplied by {_fmt(scale)}, which acts like a learning-rate gain.",
            f"learning rate = {_fmt(lr)}{self._level('learning_rate', lr)}: the optimiser step; "
            f"times the update scale it gives an effective step of {_fmt(lr * scale)}; too high "
            "diverges, too low barely trains.",
            f"batch size = {_fmt(batch)}{self._level('batch_size', batch)}: larger batches take "
            f"fewer, less noisy steps; learning rate per example = {_fmt(lr / batch)}.",
            f"dropout = {_fmt(dropout)}{self._level('lora_dropout', dropout)}: regularises the "
            "adapter; helps against overfitting small data, slows fitting.",
        ]
        named = {"r", "alpha_ratio", "learning_rate", "batch_size", "lora_dropout"}
        for name, value in row.items():
            if name not in named:
                lines.append(f"{name} = {_fmt(value)}{self._level(name, value)}.")
        return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.3g}"
    return str(value)
