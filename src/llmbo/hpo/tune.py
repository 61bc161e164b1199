"""llmbo as a Ray Tune ``Searcher``: the LoRA search (or any pool) inside a user's Tuner.

:class:`LlmboSearcher` hands each Tune trial one configuration of the pool, proposed by a
:class:`~llmbo.study.Study` (the trials Tune is still running are pending there, so they
are neither proposed again nor ignored by the acquisition), and stores every result or
error as it arrives. ``save``/``restore`` keep the mapping of running Tune trials to
candidates; the observations live in the study's storage, so a searcher restored on a
file or database study continues where it stopped.

    from ray import tune
    from llmbo.hpo import LoraSearchSpace
    from llmbo.hpo.tune import LlmboSearcher

    searcher = LlmboSearcher.for_lora(LoraSearchSpace(), metric="eval_loss", mode="min",
                                      storage="tune-study.db")
    tune.Tuner(train_fn, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=30)).fit()
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from llmbo._imports import require
from llmbo.errors import InputError, PoolExhaustedError
from llmbo.proposers import Proposer
from llmbo.space import CandidateSpace
from llmbo.study import Study

logger = logging.getLogger("llmbo.hpo")

require("ray.tune", "llmbo.hpo.tune (the Ray Tune searcher)")
from ray.tune.search import Searcher  # noqa: E402

__all__ = ["LlmboSearcher"]


class LlmboSearcher(Searcher):
    """A Ray Tune searcher over a finite pool of configurations.

    Args:
        space: The configurations (each table row, without its ``text``, is a Tune config).
        proposer: Where suggestions come from (e.g. ``METHODS.get("llmbo").proposer(...)``).
        metric: The reported metric (Tune's argument).
        mode: ``"min"`` or ``"max"`` (Tune's argument).
        seed: Seed of every proposal.
        storage: Where the study lives (a file or URL lets ``restore`` continue).
        study_name: The study's name in ``storage``.
        fixed: Settings added to every config (not searched).
    """

    def __init__(
        self,
        space: CandidateSpace,
        proposer: Proposer,
        *,
        metric: str | None = None,
        mode: str | None = None,
        seed: int = 0,
        storage: Any = None,
        study_name: str = "tune",
        fixed: dict[str, Any] | None = None,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise InputError(f"mode must be 'min' or 'max', got {mode!r}.")
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.proposer = proposer
        self.seed = seed
        self.storage = storage
        self.study_name = study_name
        self.fixed = dict(fixed or {})
        self.live: dict[str, str] = {}
        self._study: Study | None = None

    @classmethod
    def for_lora(
        cls,
        space: Any = None,
        *,
        method: str = "llmbo",
        model: str = "minilm",
        initial_trials: int = 5,
        **kwargs: Any,
    ) -> LlmboSearcher:
        """The LoRA search of :mod:`llmbo.hpo` (grid, prompts, ``method``) as a searcher."""
        from dataclasses import replace

        from llmbo.hpo.search import METHODS
        from llmbo.hpo.space import LoraSearchSpace

        chosen = METHODS.get(method)
        grid = replace(space or LoraSearchSpace(), prompt=chosen.prompt)
        kwargs.setdefault("fixed", grid.fixed)
        kwargs.setdefault("study_name", f"tune-lora-{chosen.name}")
        return cls(grid.candidate_space(), chosen.proposer(model, initial_trials), **kwargs)

    # ------------------------------------------------------------------ study
    @property
    def study(self) -> Study:
        if self._study is None:
            if self.mode is None or self.metric is None:
                raise InputError("LlmboSearcher needs metric and mode (here or in TuneConfig).")
            self._study = Study(
                self.space,
                self.proposer,
                maximize=self.mode == "max",
                seed=self.seed,
                storage=self.storage,
                study_name=self.study_name,
            )
        return self._study

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        if self._study is not None:
            return False
        if metric:
            self._metric = metric
        if mode:
            if mode not in ("min", "max"):
                return False
            self._mode = mode
        return True

    # ------------------------------------------------------------------ Tune API
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        from llmbo.hpo.search import searched_params

        try:
            cid = self.study.ask(1)[0]
        except PoolExhaustedError:
            logger.info("Every configuration was tried; the search is finished.")
            return Searcher.FINISHED  # type: ignore[return-value]
        self.live[trial_id] = cid
        return searched_params(self.space, cid, self.fixed)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        cid = self.live.pop(trial_id, None)
        if cid is None:
            return
        value = None if result is None else result.get(self.metric)
        if error or value is None:
            reason = "errored in Ray Tune" if error else f"reported no {self.metric!r}"
            self.study.fail([cid], f"trial failed: Tune trial {trial_id} {reason}")
            return
        try:
            self.study.tell([cid], [float(value)])
        except (InputError, TypeError, ValueError) as exc:
            self.study.fail([cid], f"trial failed: Tune trial {trial_id} reported {value!r}: {exc}")

    def save(self, checkpoint_path: str) -> None:
        state = {
            "live": self.live,
            "storage": str(self.storage) if isinstance(self.storage, str | Path) else None,
            "study_name": self.study_name,
            "metric": self.metric,
            "mode": self.mode,
        }
        Path(checkpoint_path).write_text(json.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self.live = dict(state["live"])
        if state.get("storage"):
            self.storage = state["storage"]
        self.study_name = state["study_name"]
        self._metric, self._mode = state["metric"], state["mode"]
        self._study = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_study"] = None  # reopened from its storage where it is unpickled
        return state
