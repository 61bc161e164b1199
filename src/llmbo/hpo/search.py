"""The LoRA hyperparameter search: a durable study, a proposer, trials in sequence or on Ray.

:class:`LoraSearch` renders the grid (:class:`~llmbo.hpo.space.LoraSearchSpace`), opens a
:class:`~llmbo.study.Study` over it whose proposer is one of :data:`METHODS` (``llmbo``:
the ``token`` surrogate on the knowledge prompts; its ablations; standard BO on the
numeric configuration; random; Optuna TPE), and runs real trials
(:func:`~llmbo.hpo.trial.run_trial`) until the study holds the wanted number. A failed
trial is stored with its error and the search goes on. With ``workers > 1`` trials run in
parallel on Ray; the running ones are pending in the study, so the acquisition knows
about them and never proposes them twice. Every trial is stored as it ends: a search
that is interrupted resumes from the study (suggestions left unfinished by a dead driver
are offered again).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from llmbo.errors import InputError, StudySettingsError
from llmbo.hpo.space import LoraSearchSpace
from llmbo.hpo.task import LoraTask, TrainingConfig
from llmbo.hpo.trial import TrialOutcome, run_trial
from llmbo.proposers import BayesianProposer, Proposer, RandomProposer, TPEProposer
from llmbo.registry import Registry
from llmbo.space import CandidateSpace
from llmbo.storage import TrialState
from llmbo.study import Study
from llmbo.surrogates.config import surrogate_config

logger = logging.getLogger("llmbo.hpo")

__all__ = ["METHODS", "LoraSearch", "Method", "check_ray_address", "searched_params"]

#: Error text prefix of trials that ran and failed (as opposed to released suggestions).
TRIAL_FAILED = "trial failed"


@dataclass(frozen=True)
class Method:
    """A search method: which prompt it reads and how it proposes.

    ``proposer(model, initial_trials)`` builds the proposer; ``model`` is the encoder's
    transformer for LLM methods.
    """

    name: str
    prompt: str
    proposer: Callable[[str, int], Proposer]
    description: str


def _token(token: bool, in_context: bool = False) -> Callable[[str, int], Proposer]:
    def build(model: str, initial: int) -> Proposer:
        config = surrogate_config("token", token=token, in_context=in_context)
        config = replace(config, encoder=replace(config.encoder, model=model))
        return BayesianProposer(config, min_observations=initial)

    return build


def _numeric(model: str, initial: int) -> Proposer:
    config = surrogate_config("numeric")
    return BayesianProposer(config, min_observations=initial)


#: Search methods by name.
METHODS: Registry[Method] = Registry("search method")
for _method in (
    Method("llmbo", "knowledge", _token(True), "token surrogate, knowledge prompts"),
    Method("llmbo-no-token", "knowledge", _token(False), "ablation: no learnable token"),
    Method("llmbo-bare", "bare", _token(True), "ablation: bare 'rank=8, alpha=16, ...' prompts"),
    Method(
        "llmbo-in-context",
        "knowledge",
        _token(True, in_context=True),
        "whole prompts read in one pass (slow on large grids)",
    ),
    Method("standard-bo", "knowledge", _numeric, "GP (Matérn-ARD) on log-scaled numbers"),
    Method("random", "knowledge", lambda m, i: RandomProposer(), "uniform random search"),
    Method("tpe", "knowledge", lambda m, i: TPEProposer(), "Optuna TPE, every column categorical"),
):
    METHODS.register(_method.name)(_method)


def searched_params(space: CandidateSpace, candidate_id: str, fixed: Mapping[str, Any]) -> dict:
    """The settings of one configuration: its grid row (as plain Python values) + ``fixed``."""
    row = space.rows([candidate_id]).iloc[0]
    params = {k: _plain(v) for k, v in row.items() if k != "text"}
    return {**fixed, **params}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Refuse a Ray address whose ``host:port`` does not answer (before ``ray.init`` hangs)."""
    if address in ("auto", "local") or (
        address.startswith("ray://") is False and ":" not in address
    ):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise InputError(
            f"Cannot reach the Ray cluster at {address!r} ({exc}). Start it (`ray start --head`) "
            "or leave --ray-address out to start a local Ray."
        ) from exc


class LoraSearch:
    """Search LoRA hyperparameters of ``task`` with real trials.

    Args:
        task: What each trial trains and scores.
        space: The searched grid (default: the paper's 45,360 configurations).
        method: A name in :data:`METHODS` (``"llmbo"`` default).
        training: Settings every trial shares.
        proxy_fraction: Share of the training split each trial trains on.
        initial_trials: Random trials before the model proposes (LLM and standard BO).
        model: The transformer that reads the prompts (``token`` methods).
        seed: Seed of every proposal.
        storage: Where the study lives (a path or SQLAlchemy URL; default an in-memory
            database). Reopening a study continues it.
        study_name: The study's name in ``storage``.
        progress: Show a progress bar while running.
        runner: Runs one trial: ``runner(task, params, training, proxy_fraction=...)`` ->
            :class:`~llmbo.hpo.trial.TrialOutcome` (default :func:`~llmbo.hpo.trial.run_trial`;
            e.g. a user's own training loop, or a cache of earlier identical trainings).
    """

    def __init__(
        self,
        task: LoraTask,
        space: LoraSearchSpace | None = None,
        *,
        method: str = "llmbo",
        training: TrainingConfig | None = None,
        proxy_fraction: float = 0.1,
        initial_trials: int = 5,
        model: str = "minilm",
        seed: int = 0,
        storage: Any = None,
        study_name: str | None = None,
        progress: bool = False,
        runner: Callable[..., TrialOutcome] | None = None,
    ) -> None:
        if not isinstance(task, LoraTask):
            raise InputError(f"task must be a LoraTask, got {type(task).__name__}.")
        if not (isinstance(proxy_fraction, int | float) and 0 < proxy_fraction <= 1):
            raise InputError(f"proxy_fraction must be in (0, 1], got {proxy_fraction!r}.")
        if (
            isinstance(initial_trials, bool)
            or not isinstance(initial_trials, int)
            or initial_trials < 1
        ):
            raise InputError(f"initial_trials must be a positive integer, got {initial_trials!r}.")
        self.task = task
        self.method = METHODS.get(method)
        base = space or LoraSearchSpace()
        self.search_space = replace(base, prompt=self.method.prompt)  # type: ignore[arg-type]
        self.training = training or TrainingConfig()
        self.proxy_fraction = float(proxy_fraction)
        self.progress = progress
        self.runner = runner or run_trial
        self.space = self.search_space.candidate_space()
        proposer = self.method.proposer(model, initial_trials)
        self.study = Study(
            self.space,
            proposer,
            maximize=task.higher_is_better,
            seed=seed,
            storage=storage,
            study_name=study_name or f"lora-{task.name}-{self.method.name}",
            progress=False,
        )
        self._check_settings()

    #: Training settings that say where or how long to run, not what to compute.
    RUNTIME_TRAINING = frozenset({"device", "time_limit", "eval_batch_size"})

    def settings(self) -> dict[str, Any]:
        """What the study's values depend on besides the grid: task, training, proxy."""
        training = {
            k: v for k, v in self.training.to_dict().items() if k not in self.RUNTIME_TRAINING
        }
        return {
            "task": self.task.describe(),
            "training": training,
            "proxy_fraction": self.proxy_fraction,
            "fixed": self.search_space.fixed,
        }

    def _check_settings(self) -> None:
        """Store the search settings in a new study; refuse to continue one made with others
        (its values would not compare)."""
        storage, study_id = self.study.storage, self.study.record.study_id
        wanted = json.loads(json.dumps(self.settings(), default=str))
        stored = storage.get_attrs(study_id).get("lora_search")
        if stored is None:
            storage.set_attr(study_id, "lora_search", wanted)
            return
        if stored != wanted:
            diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise StudySettingsError(
                f"Study {self.study.record.name!r} was made with other {', '.join(diff)} "
                f"(stored {[stored.get(k) for k in diff]}, given {[wanted.get(k) for k in diff]}); "
                "its trials would not compare. Use the same settings or another study name."
            )

    # ------------------------------------------------------------------ state
    def finished(self) -> int:
        """Trials that ran: completed, or failed by the trial itself."""
        done = 0
        for trial in self.study.trials([TrialState.COMPLETE, TrialState.FAILED]):
            if trial.state is TrialState.COMPLETE or (trial.error or "").startswith(TRIAL_FAILED):
                done += 1
        return done

    def params(self, candidate_id: str) -> dict[str, Any]:
        """The settings a trial of ``candidate_id`` trains with."""
        return searched_params(self.space, candidate_id, self.search_space.fixed)

    def history(self) -> pd.DataFrame:
        """Every trial with its configuration columns."""
        history = self.study.history
        frame = self.space.frame.drop(columns=["text"], errors="ignore")
        frame = frame.set_axis(pd.Index(list(self.space.ids), name="candidate_id"))
        return history.join(frame, on="candidate_id")

    def best(self) -> dict[str, Any] | None:
        """The best configuration so far with its ``value`` (``None`` before any result)."""
        best = self.study.best(1)
        if best.empty:
            return None
        cid = str(best.index[0]) if best.index.name else str(best["candidate_id"].iloc[0])
        return {**self.params(cid), "value": float(best["value"].iloc[0]), "candidate_id": cid}

    # ------------------------------------------------------------------ running
    def run(
        self, n_trials: int, *, workers: int = 1, ray_address: str | None = None
    ) -> pd.DataFrame:
        """Run trials until the study holds ``n_trials`` that ran; returns the history."""
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
            raise InputError(f"n_trials must be an integer >= 0, got {n_trials!r}.")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be a positive integer, got {workers!r}.")
        released = self.study.release_pending()
        if released:
            logger.warning(
                "Offering again %d suggestion(s) an earlier run left unfinished.", len(released)
            )
        todo = max(0, n_trials - self.finished())
        with _Progress(self, n_trials, enabled=self.progress) as bar:
            if workers == 1 and ray_address is None:
                for _ in range(todo):
                    cid = self.study.ask(1)[0]
                    self.record(
                        cid,
                        self.runner(
                            self.task,
                            self.params(cid),
                            self.training,
                            proxy_fraction=self.proxy_fraction,
                        ),
                    )
                    bar.update()
            else:
                from llmbo.hpo.workers import run_on_ray

                run_on_ray(self, todo, workers=workers, address=ray_address, on_result=bar.update)
        return self.history()

    def record(self, candidate_id: str, outcome: TrialOutcome) -> None:
        """Store a trial's outcome: its value, or its error as a failed trial."""
        if outcome.ok:
            self.study.tell([candidate_id], [float(outcome.value)])  # type: ignore[arg-type]
        else:
            self.study.fail([candidate_id], outcome.error or TRIAL_FAILED)

    def evaluate_best(self, *, proxy_fraction: float = 1.0) -> TrialOutcome | None:
        """Retrain the best configuration on the full training split and score the test
        split (``None`` before any result)."""
        best = self.best()
        if best is None:
            return None
        params = self.params(best["candidate_id"])
        return self.runner(
            self.task, params, self.training, proxy_fraction=proxy_fraction, evaluate_on="test"
        )


class _Progress:
    """A tqdm bar of trials with the best value and seconds per trial."""

    def __init__(self, search: LoraSearch, total: int, *, enabled: bool) -> None:
        self.search = search
        self.total = total
        self.enabled = enabled
        self.bar: Any = None
        self.start = time.perf_counter()

    def __enter__(self) -> _Progress:
        if self.enabled:
            from llmbo._progress import progress_bar

            self.bar = progress_bar(
                self.total, "llmbo hpo", unit="trial", initial=self.search.finished(), leave=True
            )
        return self

    def update(self) -> None:
        if self.bar is None:
            return
        best = self.search.study.best_value
        self.bar.set_postfix(best=f"{best:.4g}" if best is not None else "-")
        self.bar.update(1)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
