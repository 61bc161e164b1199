"""One LoRA trial: PEFT adapters on a Hugging Face model, trained and scored.

:func:`train_and_score` trains LoRA adapters (``peft.get_peft_model``) and a linear head on
the mean-pooled last hidden states of the model, with AdamW and a fixed seed, on the
training split or a seeded proxy subset of it, and scores the validation or test split.
:func:`run_trial` wraps it for a search: a crash, an out-of-memory error, a NaN loss or
metric, or a run past its time limit becomes a :class:`TrialOutcome` with the error text
(the search goes on), and the model's memory is released before it returns.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from llmbo.errors import LlmboError
from llmbo.hpo.space import TRAINING_FIELDS
from llmbo.hpo.task import LoraTask, TrainingConfig

logger = logging.getLogger("llmbo.hpo")

__all__ = [
    "TrialError",
    "TrialOutcome",
    "checked_metric",
    "encode_texts",
    "label_tensor",
    "predict",
    "proxy_subset",
    "run_trial",
    "train_and_score",
]


class TrialError(LlmboError):
    """A trial that could not produce a metric (diverged, timed out, bad metric)."""


@dataclass
class TrialOutcome:
    """What one trial produced: a finite ``value`` or an ``error``, and its duration."""

    value: float | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def proxy_subset(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A seeded random ``fraction`` of ``frame`` (at least one row)."""
    if not 0 < fraction <= 1:
        raise TrialError(f"proxy fraction must be in (0, 1], got {fraction!r}.")
    n = max(1, round(fraction * len(frame)))
    rows = np.random.default_rng(seed).permutation(len(frame))[:n]
    return frame.iloc[np.sort(rows)].reset_index(drop=True)


class _Regressor(nn.Module):
    """A (PEFT-wrapped) backbone, mean pooling over real tokens, and a linear head."""

    def __init__(self, backbone: nn.Module, hidden: int, outputs: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden, outputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        states = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled.to(self.head.weight.dtype))


def _lora_config(params: Mapping[str, Any]) -> Any:
    from peft import LoraConfig

    settings = {k: v for k, v in params.items() if k not in TRAINING_FIELDS | {"alpha_ratio"}}
    r = int(params.get("r", 8))
    settings["r"] = r
    settings["lora_alpha"] = float(r * float(params.get("alpha_ratio", 2)))
    settings["lora_dropout"] = float(params.get("lora_dropout", 0.0))
    try:
        return LoraConfig(**settings)
    except (TypeError, ValueError) as exc:
        raise TrialError(f"Bad LoRA settings {settings}: {exc}") from exc


def _build(
    task: LoraTask, params: Mapping[str, Any], device: torch.device
) -> tuple[nn.Module, Any]:
    from peft import get_peft_model

    from llmbo.encoders.transformer import load_pretrained

    backbone, tokenizer, config = load_pretrained(task.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0))
    peft_model = get_peft_model(backbone, _lora_config(params))
    outputs = 1 if task.kind == "regression" else len(task.classes)
    return _Regressor(peft_model, hidden, outputs).to(device), tokenizer


def encode_texts(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Padded, truncated ``input_ids`` and ``attention_mask`` of ``texts``."""
    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def label_tensor(task: LoraTask, frame: pd.DataFrame) -> torch.Tensor:
    """Labels of ``frame``: float32 values (regression) or class numbers (classification)."""
    labels = frame[task.label_column]
    if task.kind == "regression":
        return torch.tensor(pd.to_numeric(labels).to_numpy(dtype=np.float32))
    index = {c: i for i, c in enumerate(task.classes)}
    return torch.tensor([index[v] for v in labels], dtype=torch.long)


def predict(
    model: nn.Module, enc: dict[str, torch.Tensor], device: torch.device, batch: int
) -> torch.Tensor:
    """The model's outputs on tokenised texts ``enc``, in eval mode, ``batch`` at a time
    (float32, on the CPU)."""
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(enc["input_ids"]), batch):
            part = {k: v[start : start + batch].to(device) for k, v in enc.items()}
            outs.append(model(**part).float().cpu())
    return torch.cat(outs)


def train_and_score(
    task: LoraTask,
    params: Mapping[str, Any],
    training: TrainingConfig | None = None,
    *,
    proxy_fraction: float = 0.1,
    evaluate_on: Literal["validation", "test"] = "validation",
) -> float:
    """Train LoRA with hyperparameters ``params`` and return the metric on ``evaluate_on``.

    ``params`` holds ``r``, ``alpha_ratio``, ``lora_dropout``, ``batch_size``,
    ``learning_rate`` and any other ``peft.LoraConfig`` or training field. Trains on a
    ``proxy_fraction`` of the training split (``1.0``: all of it).

    Raises:
        TrialError: The loss or the metric is not finite, or the time limit passed.
    """
    training = training or TrainingConfig()
    device = torch.device(training.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    train = (
        task.train
        if proxy_fraction >= 1
        else proxy_subset(task.train, proxy_fraction, training.seed)
    )
    held_out = task.validation if evaluate_on == "validation" else task.test
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(training.seed)
        model, tokenizer = _build(task, params, device)
        try:
            return _fit_and_score(
                task, params, training, model, tokenizer, train, held_out, device, start
            )
        finally:
            del model
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _fit_and_score(
    task: LoraTask,
    params: Mapping[str, Any],
    training: TrainingConfig,
    model: nn.Module,
    tokenizer: Any,
    train: pd.DataFrame,
    held_out: pd.DataFrame,
    device: torch.device,
    start: float,
) -> float:
    max_length = int(params.get("max_length", training.max_length))
    enc = encode_texts(tokenizer, train[task.text_column].astype(str).tolist(), max_length)
    y = label_tensor(task, train)
    mean, std = (
        (float(y.mean()), float(y.std()) or 1.0) if task.kind == "regression" else (0.0, 1.0)
    )
    if task.kind == "regression" and (len(y) < 2 or not math.isfinite(std)):
        std = 1.0
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        trainable,
        lr=float(params.get("learning_rate", 1e-4)),
        weight_decay=float(params.get("weight_decay", training.weight_decay)),
    )
    batch = int(params.get("batch_size", 16))
    epochs = int(params.get("epochs", training.epochs))
    gen = torch.Generator().manual_seed(training.seed)
    for epoch in range(epochs):
        model.train()
        for rows in torch.randperm(len(y), generator=gen).split(batch):
            out = model(enc["input_ids"][rows].to(device), enc["attention_mask"][rows].to(device))
            target = y[rows].to(device)
            if task.kind == "regression":
                loss = nn.functional.mse_loss(out.squeeze(-1).float(), (target - mean) / std)
            else:
                loss = nn.functional.cross_entropy(out.float(), target)
            if not torch.isfinite(loss):
                raise TrialError(f"the training loss became {float(loss)} in epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (
                training.time_limit is not None
                and time.perf_counter() - start > training.time_limit
            ):
                raise TrialError(
                    f"time limit of {training.time_limit:g} s passed in epoch {epoch + 1}"
                )
    held = encode_texts(tokenizer, held_out[task.text_column].astype(str).tolist(), max_length)
    pred = predict(model, held, device, training.eval_batch_size)
    if task.kind == "regression":
        predictions = pred.squeeze(-1).numpy() * std + mean
    else:
        predictions = np.asarray(task.classes, dtype=object)[pred.argmax(-1).numpy()]
    labels = label_tensor(task, held_out).numpy()
    if task.kind == "classification":
        labels = np.asarray(task.classes, dtype=object)[labels]
    return checked_metric(task, predictions, labels)


def checked_metric(task: LoraTask, predictions: np.ndarray, labels: np.ndarray) -> float:
    """The task's metric of ``predictions``; :class:`TrialError` unless it is a finite number."""
    if task.kind == "regression" and not np.isfinite(predictions).all():
        raise TrialError("the model predicted non-finite values")
    value = task.metric.fn(predictions, labels)  # type: ignore[union-attr]
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TrialError(
            f"the metric {task.metric_name!r} returned {value!r} ({type(value).__name__}); a "
            "metric must return one finite number"
        )
    if not math.isfinite(float(value)):
        raise TrialError(f"the metric {task.metric_name!r} returned {float(value)}")
    return float(value)


def run_trial(
    task: LoraTask,
    params: Mapping[str, Any],
    training: TrainingConfig | None = None,
    **options: Any,
) -> TrialOutcome:
    """:func:`train_and_score` (same arguments; ``options``: ``proxy_fraction``,
    ``evaluate_on``) that never raises for a failing trial: the error text is in the
    outcome (an interrupt still propagates)."""
    start = time.perf_counter()
    try:
        value = train_and_score(task, params, training, **options)
        return TrialOutcome(value, None, time.perf_counter() - start)
    except TrialError as exc:
        error = f"trial failed: {exc}"
    except torch.cuda.OutOfMemoryError as exc:  # before RuntimeError: it is one
        error = f"trial failed: out of memory: {exc}"
    except MemoryError as exc:
        error = f"trial failed: out of memory: {exc}"
    except Exception as exc:  # a crashing trial is a failed trial; the search goes on
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        error = f"trial failed: {type(exc).__name__}: {exc}{where}"
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    logger.warning("%s (params %s)", error, dict(params))
    return TrialOutcome(None, error, time.perf_counter() - start)
