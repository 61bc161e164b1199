"""Leases of the ``RUNNING`` trials of :meth:`Study.run <llmbo.study.Study.run>`: their
settings, the worker that holds them, the heartbeat while the objective runs, and finishing
the trials afterwards."""

from __future__ import annotations

import logging
import math
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from llmbo.errors import InputError, TrialStateError
from llmbo.storage import BaseStorage, TrialRecord
from llmbo.study.heartbeat import Heartbeat
from llmbo.study.settings import shared_storage

logger = logging.getLogger("llmbo.study")

__all__ = ["complete_trials", "fail_trials", "keep_alive", "lease_timing", "new_worker_id"]


def _positive_seconds(label: str, seconds: float | None) -> None:
    if seconds is not None and not (
        isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0
    ):
        raise InputError(f"{label} must be a positive number of seconds, got {seconds!r}.")


def lease_timing(lease_seconds: float, heartbeat_seconds: float | None) -> tuple[float, float]:
    """Checked ``(lease_seconds, heartbeat_seconds)``; the heartbeat defaults to a quarter of
    the lease and must be shorter than it."""
    _positive_seconds("lease_seconds", lease_seconds)
    _positive_seconds("heartbeat_seconds", heartbeat_seconds)
    lease = float(lease_seconds)
    heartbeat = float(heartbeat_seconds if heartbeat_seconds is not None else lease / 4)
    if heartbeat >= lease:
        raise InputError(
            f"heartbeat_seconds={heartbeat} must be shorter than "
            f"lease_seconds={lease}, or leases expire between beats."
        )
    return lease, heartbeat


def new_worker_id(pid: int) -> str:
    """A worker id for process ``pid``: ``host:pid:random``."""
    return f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:12]}"


@contextmanager
def keep_alive(
    storage: BaseStorage,
    trials: Sequence[TrialRecord],
    lease_seconds: float,
    heartbeat_seconds: float,
) -> Iterator[None]:
    """Extend the leases of ``trials`` from a daemon thread while the block runs."""
    if not shared_storage(storage):  # nobody else can see (or expire) them
        yield
        return
    ids = [t.trial_id for t in trials]
    with Heartbeat(storage, ids, lease_seconds, heartbeat_seconds):
        yield


def fail_trials(storage: BaseStorage, trials: Sequence[TrialRecord], error: str) -> None:
    """Mark ``trials`` failed with ``error``, one by one; a trial that cannot be failed is
    logged, so that the error that made them fail stays the one that propagates."""
    for t in trials:
        try:
            storage.fail(t.trial_id, error)
        except Exception as exc:  # keep the objective's own error the one that propagates
            logger.warning("Could not mark trial %d failed: %r", t.trial_id, exc)


def complete_trials(
    storage: BaseStorage, trials: Sequence[TrialRecord], values: Sequence[float]
) -> None:
    """Store the measured ``values`` of ``trials``; a trial another worker took over after
    its lease expired keeps that worker's result (logged)."""
    for t, value in zip(trials, values, strict=True):
        try:
            storage.complete(t.trial_id, float(value))
        except TrialStateError as exc:
            # The lease expired and another worker took the candidate: its trial wins.
            logger.warning("Result %r of candidate %s not stored: %s", value, t.candidate_id, exc)
