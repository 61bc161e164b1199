"""The catalyst loop: gradient steps on a soft prompt, and a mentor's restarts between stages.

Each epoch is a stage. During it, after every optimiser step, the soft prompt is projected
onto its nearest vocabulary tokens and the decoded prompt is remembered (the trajectory).
At the end of every epoch the model is scored on validation, and the best state so far
(soft prompt and head) is kept. After each epoch in ``mentor_epochs`` the stage's distinct
decoded prompts are subsampled (seeded) to at most ``max_shown``, each is put back as the
soft prompt (its word embeddings, padded or cut) and scored on validation, and the mentor
is shown them; a valid proposal replaces the soft prompt and training goes on from it with
a fresh optimiser. Without a usable reply, training goes on from where it was. Everything
is recorded in a :class:`~llmbo.catalyst.record.CatalystRecord`; a checkpoint after every
epoch lets an interrupted run resume. At the end the best state is restored and scored on
the test split.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from llmbo.catalyst.config import CatalystConfig
from llmbo.catalyst.mentor import Mentor, ScoredPrompt
from llmbo.catalyst.model import SoftPromptModel
from llmbo.catalyst.record import CatalystRecord
from llmbo.errors import InputError
from llmbo.hpo.task import LoraTask
from llmbo.hpo.trial import checked_metric, encode_texts, label_tensor, predict
from llmbo.llm.base import ChatBackend

logger = logging.getLogger("llmbo.catalyst")

__all__ = ["Catalyst", "CatalystResult"]


@dataclass
class CatalystResult:
    """What a run returns.

    Attributes:
        best_validation: Best validation metric seen (at an epoch end or a restart).
        best_epoch: Epoch of that state (``-1``: before training).
        best_prompt: Decoded nearest tokens of that soft prompt.
        test_metric: The best state's metric on the test split.
        restarts: Restarts from mentor proposals.
        history: One row per epoch: ``epoch, train_loss, validation_loss, validation_metric,
            prompt`` (the decoded soft prompt), ``restarted``.
    """

    best_validation: float
    best_epoch: int
    best_prompt: str
    test_metric: float
    restarts: int
    history: pd.DataFrame


class _Split:
    """Tokenised texts and targets of one split."""

    def __init__(self, task: LoraTask, frame: pd.DataFrame, tokenizer: Any, length: int) -> None:
        self.enc = encode_texts(tokenizer, frame[task.text_column].astype(str).tolist(), length)
        self.y = label_tensor(task, frame)

    def __len__(self) -> int:
        return len(self.y)


class Catalyst:
    """Soft-prompt tuning of ``task.model`` with an LLM mentor.

    Args:
        task: Model, data splits and metric (the same object the LoRA search uses).
        backend: The mentor LLM (``None``: gradients only).
        config: Training and mentor settings.
        storage: Where the run's history lives (a path or SQLAlchemy URL; default in
            memory). Reopening the same study resumes it.
        study_name: The study's name in ``storage``.
        task_description: What the mentor is told the prompted model does (default: from
            the task's kind and columns).
        progress: Show a progress bar.
    """

    def __init__(
        self,
        task: LoraTask,
        backend: ChatBackend | None = None,
        config: CatalystConfig | None = None,
        *,
        storage: Any = None,
        study_name: str | None = None,
        task_description: str | None = None,
        progress: bool = False,
    ) -> None:
        if not isinstance(task, LoraTask):
            raise InputError(f"task must be a LoraTask, got {type(task).__name__}.")
        self.task = task
        self.backend = backend
        self.config = config or CatalystConfig()
        self.progress = progress
        self.task_description = task_description or (
            f"predict the {task.kind} target '{task.label_column}' of a text "
            f"('{task.text_column}'), scored by {task.metric_name}"
        )
        settings = {
            "task": task.describe(),
            "config": self.config.to_dict(),
            "llm": backend.describe() if backend is not None else None,
        }
        self.record = CatalystRecord(
            storage,
            study_name or f"catalyst-{task.name}",
            settings,
            maximize=task.higher_is_better,
        )

    # ------------------------------------------------------------------ helpers
    def _better(self, a: float, b: float) -> bool:
        return a > b if self.task.higher_is_better else a < b

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task.kind == "regression":
            return nn.functional.mse_loss(out.squeeze(-1).float(), (target - self.mean) / self.std)
        return nn.functional.cross_entropy(out.float(), target)

    def _evaluate(self, model: SoftPromptModel, split: _Split) -> tuple[float, float]:
        """(loss, metric) of the current model on ``split``."""
        out = predict(model, split.enc, model.device, 128)
        loss = float(self._loss(out, split.y))
        if self.task.kind == "regression":
            predictions = out.squeeze(-1).numpy() * self.std + self.mean
            labels = split.y.numpy()
        else:
            classes = np.asarray(self.task.classes, dtype=object)
            predictions, labels = classes[out.argmax(-1).numpy()], classes[split.y.numpy()]
        return loss, checked_metric(self.task, predictions, labels)

    def _optimizer(self, model: SoftPromptModel) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            [
                {"params": [model.prompt], "lr": self.config.learning_rate},
                {"params": model.head.parameters(), "lr": self.config.head_learning_rate},
            ],
            weight_decay=0.0,
        )

    def _initial_prompt(self, model: SoftPromptModel) -> None:
        cfg = self.config
        if cfg.init_text:
            ids = model.text_tokens(cfg.init_text)
            if not ids:
                raise InputError(
                    f"init_text {cfg.init_text!r} has no token of the model's vocabulary."
                )
        else:
            allowed = torch.nonzero(model.allowed_tokens.cpu()).flatten()
            gen = torch.Generator().manual_seed(cfg.seed)
            draw = torch.randint(len(allowed), (cfg.num_virtual_tokens,), generator=gen)
            ids = allowed[draw].tolist()
        model.set_prompt(model.token_vectors(ids))

    # ------------------------------------------------------------------ the run
    def run(self) -> CatalystResult:
        """Train (or resume) to the last epoch; returns the best state's result."""
        cfg = self.config
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            model = SoftPromptModel(self.task, cfg.num_virtual_tokens, device)
            return self._run(model)

    def _run(self, model: SoftPromptModel) -> CatalystResult:
        cfg, task = self.config, self.task
        tokenizer = model.tokenizer
        train = _Split(task, task.train, tokenizer, cfg.max_length)
        validation = _Split(task, task.validation, tokenizer, cfg.max_length)
        self.mean, self.std = 0.0, 1.0
        if task.kind == "regression" and len(train) > 1:
            self.mean, self.std = float(train.y.mean()), float(train.y.std()) or 1.0
        self._initial_prompt(model)
        opt = self._optimizer(model)
        mentor = (
            Mentor(
                self.backend,
                self.task_description,
                proposals=cfg.proposals,
                min_words=cfg.min_words,
                max_words=cfg.max_words,
                generation=cfg.generation,
            )
            if self.backend is not None
            else None
        )
        state: dict[str, Any] = {
            "best": None,
            "best_metric": None,
            "best_epoch": -1,
            "restarts": 0,
            "rows": [],
        }
        start_epoch = 0
        stored = self.record.checkpoint()
        if stored is not None:
            epoch, saved = stored
            model.load_trainable_state(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            state = saved["run"]
            start_epoch = epoch + 1
            self.record.add("resume", after_epoch=epoch)
            logger.info("Resuming catalyst run %r after epoch %d.", self.record.name, epoch)
        else:
            loss, metric = self._evaluate(model, validation)
            self._keep(model, state, metric, -1)
            self.record.add("start", validation_loss=loss, validation_metric=metric,
                            prompt=model.decode(model.nearest_tokens()))  # fmt: skip
        bar = _progress(self.progress, cfg.epochs, start_epoch)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                opt = self._epoch(model, opt, train, validation, mentor, state, epoch)
                self.record.save_checkpoint(
                    epoch,
                    {"model": model.trainable_state(), "optimizer": opt.state_dict(), "run": state},
                )
                if bar is not None:
                    bar.set_postfix(best=f"{state['best_metric']:.4g}", restarts=state["restarts"])
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self._finish(model, state)

    def _keep(self, model: SoftPromptModel, state: dict, metric: float, epoch: int) -> bool:
        if state["best_metric"] is None or self._better(metric, state["best_metric"]):
            state.update(best=model.trainable_state(), best_metric=metric, best_epoch=epoch)
            return True
        return False

    def _epoch(
        self,
        model: SoftPromptModel,
        opt: torch.optim.Optimizer,
        train: _Split,
        validation: _Split,
        mentor: Mentor | None,
        state: dict,
        epoch: int,
    ) -> torch.optim.Optimizer:
        cfg = self.config
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout; same on resume
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        trajectory: dict[tuple[int, ...], None] = {}
        losses = []
        model.train()
        for rows in torch.randperm(len(train), generator=gen).split(cfg.batch_size):
            out = model(**{k: v[rows].to(model.device) for k, v in train.enc.items()})
            loss = self._loss(out, train.y[rows].to(model.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {float(loss)} in epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            trajectory[tuple(model.nearest_tokens())] = None
        val_loss, val_metric = self._evaluate(model, validation)
        improved = self._keep(model, state, val_metric, epoch)
        prompt = model.decode(model.nearest_tokens())
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "validation_loss": val_loss,
            "validation_metric": val_metric,
            "prompt": prompt,
            "restarted": False,
        }
        self.record.add("epoch", **row, best_so_far=improved, decoded_prompts=len(trajectory))
        if mentor is not None and epoch in cfg.mentor_epochs:
            restarted = self._consult(model, mentor, list(trajectory), validation, state, epoch)
            if restarted:
                row["restarted"] = True
                opt = self._optimizer(model)
        state["rows"].append(row)
        return opt

    def _consult(
        self,
        model: SoftPromptModel,
        mentor: Mentor,
        trajectory: list[tuple[int, ...]],
        validation: _Split,
        state: dict,
        epoch: int,
    ) -> bool:
        """Show the stage's prompts to the mentor and restart from a proposal; ``True`` if
        it restarted."""
        cfg = self.config
        current = model.trainable_state()
        rng = np.random.default_rng(cfg.seed * 7919 + epoch)
        if len(trajectory) > cfg.max_shown:
            keep = np.sort(rng.choice(len(trajectory), cfg.max_shown, replace=False))
            trajectory = [trajectory[i] for i in keep]
        shown = []
        for ids in trajectory:
            model.set_prompt(model.token_vectors(list(ids)))
            loss, metric = self._evaluate(model, validation)
            shown.append(ScoredPrompt(model.decode(list(ids)), loss, metric))
        self.record.add("candidates", epoch=epoch,
                        shown=[vars(s) for s in shown])  # fmt: skip
        consultation = mentor.consult(shown, model.text_tokens, seed=cfg.seed * 7919 + epoch)
        self.record.add("mentor", epoch=epoch, llm=mentor.backend.label, **consultation.to_dict())
        if not consultation.proposals:
            model.load_trainable_state(current)
            self.record.add("no_restart", epoch=epoch, reason=consultation.error or "no proposal")
            logger.warning(
                "Epoch %d: no usable mentor proposal (%s); continuing on gradients alone.",
                epoch,
                consultation.error,
            )
            return False
        candidates = consultation.proposals
        if cfg.restart_from == "first":
            candidates = candidates[:1]
        scored = []
        for text in candidates:
            vectors = model.token_vectors(model.text_tokens(text))
            model.load_trainable_state(current)
            model.set_prompt(vectors)
            loss, metric = self._evaluate(model, validation)
            scored.append((text, vectors, loss, metric))
        pick = min(scored, key=lambda s: s[2])
        text, vectors, loss, metric = pick
        model.load_trainable_state(current)
        current_loss = None
        if cfg.restart_when == "improves":
            current_loss, _ = self._evaluate(model, validation)
            if loss >= current_loss:
                reason = (
                    f"the proposal {text!r} has validation loss {loss:.4g}, not below the "
                    f"current prompt's {current_loss:.4g}"
                )
                self.record.add("no_restart", epoch=epoch, reason=reason, prompt=text)
                logger.info("Epoch %d: %s; training goes on.", epoch, reason)
                return False
        model.set_prompt(vectors)
        self._keep(model, state, metric, epoch)
        state["restarts"] += 1
        self.record.add("restart", epoch=epoch, prompt=text, validation_loss=loss,
                        validation_metric=metric, replaced_validation_loss=current_loss,
                        scored=[{"prompt": s[0], "validation_loss": s[2],
                                 "validation_metric": s[3]} for s in scored])  # fmt: skip
        logger.info("Epoch %d: restarting from the mentor's prompt %r.", epoch, text)
        return True

    def _finish(self, model: SoftPromptModel, state: dict) -> CatalystResult:
        model.load_trainable_state(state["best"])
        test = _Split(self.task, self.task.test, model.tokenizer, self.config.max_length)
        _, test_metric = self._evaluate(model, test)
        best_prompt = model.decode(model.nearest_tokens())
        self.record.add("finish", best_validation=state["best_metric"],
                        best_epoch=state["best_epoch"], test_metric=test_metric,
                        best_prompt=best_prompt, restarts=state["restarts"])  # fmt: skip
        if not math.isfinite(test_metric):
            raise FloatingPointError("the test metric is not finite")
        return CatalystResult(
            best_validation=float(state["best_metric"]),
            best_epoch=int(state["best_epoch"]),
            best_prompt=best_prompt,
            test_metric=float(test_metric),
            restarts=int(state["restarts"]),
            history=pd.DataFrame(state["rows"]),
        )


def _progress(enabled: bool, total: int, done: int) -> Any:
    if not enabled:
        return None
    from llmbo._progress import progress_bar

    return progress_bar(total, "llmbo catalyst", unit="epoch", initial=done)
