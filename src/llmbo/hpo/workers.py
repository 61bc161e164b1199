"""Trials on Ray workers: a local Ray started here, or an existing cluster by address.

The driver keeps ``workers`` trials in flight. Each is asked from the study just before it
starts, so the ones still running are pending when the next is proposed (the acquisition
conditions on them and never proposes them again); each result is stored the moment it
arrives. A trial whose worker dies is stored as failed with Ray's error text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmbo._imports import require
from llmbo.errors import InputError
from llmbo.hpo.trial import TrialOutcome, run_trial

if TYPE_CHECKING:
    from llmbo.hpo.search import LoraSearch

logger = logging.getLogger("llmbo.hpo")

__all__ = ["ray_trial", "run_on_ray", "start_ray"]


def ray_trial(
    runner: Any, task: Any, params: dict, training: Any, proxy_fraction: float, threads: int
) -> TrialOutcome:
    """One trial inside a Ray worker, on ``threads`` torch threads (``runner``: the
    search's trial function, :func:`~llmbo.hpo.trial.run_trial` by default)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    return (runner or run_trial)(task, params, training, proxy_fraction=proxy_fraction)


def start_ray(workers: int, address: str | None) -> Any:
    """``ray`` after making sure it runs: connect to ``address`` or start a local Ray with
    ``workers`` CPUs (an already initialised Ray is used as it is)."""
    ray = require("ray", "Running trials on Ray workers")
    if ray.is_initialized():
        return ray
    if address is not None:
        from llmbo.hpo.search import check_ray_address

        check_ray_address(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError) as exc:
            raise InputError(f"Could not connect to Ray at {address!r}: {exc}") from exc
    else:
        ray.init(
            num_cpus=workers,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    return ray


def run_on_ray(
    search: LoraSearch,
    n_trials: int,
    *,
    workers: int,
    address: str | None = None,
    on_result: Callable[[], None] | None = None,
) -> None:
    """Run ``n_trials`` more trials of ``search``, ``workers`` at a time, on Ray."""
    ray = start_ray(workers, address)
    remote = ray.remote(num_cpus=1, max_retries=0)(ray_trial)
    task_ref = ray.put(search.task)
    runner = None if search.runner is run_trial else search.runner
    threads = 1
    in_flight: dict[Any, str] = {}
    started = 0
    try:
        while started < n_trials or in_flight:
            while len(in_flight) < workers and started < n_trials:
                cid = search.study.ask(1)[0]
                ref = remote.remote(
                    runner,
                    task_ref,
                    search.params(cid),
                    search.training,
                    search.proxy_fraction,
                    threads,
                )
                in_flight[ref] = cid
                started += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                cid = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    outcome = TrialOutcome(None, f"trial failed: Ray worker error: {exc}", 0.0)
                search.record(cid, outcome)
                if on_result is not None:
                    on_result()
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        if in_flight:
            search.study.release_pending()
