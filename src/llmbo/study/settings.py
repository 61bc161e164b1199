"""What a study stores about itself (space, proposer settings) and how a reopening is checked."""

from __future__ import annotations

import logging
from typing import Any

from llmbo.errors import LlmboError, SpaceError, StudyError, StudySettingsError
from llmbo.proposers.base import Proposer, proposer_from_config
from llmbo.space import CandidateSpace
from llmbo.storage import BaseStorage, StudyRecord

logger = logging.getLogger("llmbo.study")

__all__ = [
    "check_reopened",
    "flatten_settings",
    "normalised_proposer_config",
    "proposer_settings_differences",
    "shared_storage",
    "space_payload",
    "stored_proposer_config",
]


def shared_storage(storage: BaseStorage) -> bool:
    """Whether other processes can see this storage (not a private in-memory database)."""
    from sqlalchemy.engine import make_url

    url = getattr(storage, "url", None)
    if not isinstance(url, str):
        return True
    parsed = make_url(url)
    return not (parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"))


def space_payload(space: CandidateSpace, *, shared: bool) -> dict[str, Any]:
    """The space as stored in a new study, checked to rebuild exactly.

    Callable templates cannot be stored (the hash only is kept). Tables whose values do
    not survive storage (e.g. ``inf`` in a template column, written as JSON ``null``) would
    give a study nobody can reopen: :class:`SpaceError` for a ``shared`` storage (one other
    processes can open), the hash only for a private in-memory one.
    """
    hash_only = {"content_hash": space.content_hash(), "name": space.name}
    try:
        payload = space.to_dict()
    except Exception:  # callable templates cannot be stored; keep the hash only
        return hash_only
    try:
        problem = (
            None
            if CandidateSpace.from_dict(payload).content_hash() == space.content_hash()
            else "it rebuilds with other texts"
        )
    except LlmboError as exc:
        problem = str(exc)
    if problem is None:
        return payload
    if not shared:
        logger.debug("Space not stored in the in-memory study: %s", problem)
        return hash_only
    raise SpaceError(
        f"This table cannot be stored in a study: read back, {problem} Values such as "
        "inf or -inf in template columns do not survive storage; clean or drop those rows."
    )


def stored_proposer_config(config: dict[str, Any]) -> dict[str, Any]:
    """The proposer config of a stored study config, in today's format.

    Studies written before proposers existed (llmbo 0.1.0) store ``surrogate``,
    ``acquisition`` and ``min_observations`` at the top level: a ``random`` surrogate
    becomes the random proposer, anything else the Bayesian one, its ``SurrogateSpec``
    converted to the config of its surrogate
    (:func:`~llmbo.surrogates.config.from_legacy_spec`).
    """
    if "proposer" in config:
        return dict(config["proposer"])
    surrogate = dict(config.get("surrogate", {}))
    if surrogate.get("name") == "random":
        return {"name": "random"}
    if "instance" not in surrogate:
        from llmbo.surrogates.config import from_legacy_spec

        try:
            surrogate = from_legacy_spec(surrogate)
        except LlmboError as exc:
            raise StudyError(f"Stored surrogate settings this llmbo cannot read: {exc}") from exc
    return {
        "name": "bayesian",
        "surrogate": surrogate,
        "acquisition": dict(config.get("acquisition", {})),
        "min_observations": config.get("min_observations", 2),
    }


def normalised_proposer_config(config: dict[str, Any]) -> dict[str, Any]:
    """A proposer config with every default filled in, by rebuilding the proposer (so two
    configs compare field by field); one that cannot be rebuilt (a custom surrogate
    object) is returned as stored."""
    if "instance" in config.get("surrogate", {}):
        return config
    return proposer_from_config(config).config()


def flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"a.b.c": value}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def proposer_settings_differences(
    stored: dict[str, Any], proposer: Proposer, study_name: str
) -> list[str]:
    """``key=stored (asked: given)`` for every proposer setting that differs from the
    stored one, the proposer's runtime settings (e.g. the device) excepted."""
    try:
        had = normalised_proposer_config(stored)
    except (LlmboError, TypeError) as exc:
        raise StudyError(
            f"Study {study_name!r} has settings this llmbo cannot read: {exc}"
        ) from exc
    asked = normalised_proposer_config(proposer.config())
    if had.get("name") != asked.get("name"):  # one difference says it all
        return [f"proposer.name={had.get('name')!r} (asked: {asked.get('name')!r})"]
    a, b = flatten_settings({"proposer": had}), flatten_settings({"proposer": asked})
    runtime = {f"proposer.{key}" for key in proposer.runtime_settings}
    return [
        f"{key}={a.get(key)!r} (asked: {b.get(key)!r})"
        for key in sorted(set(a) | set(b))
        if key not in runtime and a.get(key) != b.get(key)
    ]


def check_reopened(
    record: StudyRecord,
    name: str,
    space: CandidateSpace,
    proposer: Proposer,
    *,
    seed: int,
    direction: str,
) -> None:
    """Refuse to reopen the study ``name`` (stored as ``record``) for another candidate
    space, or with other proposer settings, seed or direction: :class:`StudySettingsError`
    naming every difference."""
    stored = record.space.get("content_hash")
    if stored and stored != space.content_hash():
        raise StudySettingsError(
            f"Study {name!r} was created for a different candidate space; use another "
            "study name or the original table and template."
        )
    differences = proposer_settings_differences(
        stored_proposer_config(record.config), proposer, name
    )
    for key, had, asked in (
        ("seed", record.seed, seed),
        ("direction", record.direction, direction),
    ):
        if had != asked:
            differences.append(f"{key}={had!r} (asked: {asked!r})")
    if differences:
        raise StudySettingsError(
            f"Study {name!r} was created with other settings: "
            + "; ".join(sorted(differences))
            + ". A study keeps the settings it was created with: reopen it with "
            "Optimizer.load() (in the CLI, leave the options out), or start a new study."
        )
