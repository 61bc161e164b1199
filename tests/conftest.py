"""Shared fixtures: a tiny random-weight transformer saved to disk (no download)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:  # heavy imports only for annotations; the fixtures import lazily
    from torch import Tensor

    from llmbo.space import CandidateSpace
    from llmbo.surrogates.base import FittedSurrogate
    from llmbo.surrogates.deep_kernel import GPDevice

POSTGRES_ENV = "LLMBO_TEST_POSTGRES_URL"


def postgres_required() -> bool:
    """Under ``CI=true`` the PostgreSQL tests must run: their skip is a failure there."""
    return os.environ.get("CI") == "true" and not os.environ.get(POSTGRES_ENV)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Turn the skip of a PostgreSQL test (its reason names ``LLMBO_TEST_POSTGRES_URL``;
    see tests/test_storage.py and tests/reliability/_fixtures.py) into a failure under
    ``CI=true``, so a CI run without PostgreSQL cannot pass with those tests skipped."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.skipped and postgres_required()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if POSTGRES_ENV in str(reason):
        report.outcome = "failed"
        report.longrepr = (
            f"ci: error: PostgreSQL is required under CI=true, but {POSTGRES_ENV} is not set "
            f"(this test would have skipped: {reason}). Run .ci/run, which starts a scratch "
            f"PostgreSQL and exports {POSTGRES_ENV}, or unset CI to skip these tests locally."
        )


WORDS = [
    "a",
    "an",
    "the",
    "in",
    "on",
    "of",
    "with",
    "and",
    "at",
    "by",
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "black",
    "white",
    "cat",
    "dog",
    "fox",
    "owl",
    "bee",
    "eel",
    "yak",
    "emu",
    "ant",
    "bat",
    "forest",
    "desert",
    "river",
    "city",
    "farm",
    "sea",
    "hill",
    "ligand",
    "base",
    "additive",
    "solvent",
    "catalyst",
    "temperature",
    "rank",
    "alpha",
    "dropout",
    "batch",
    "rate",
    "high",
    "low",
    "fast",
    "slow",
    "hot",
    "cold",
    "big",
    "small",
    "good",
    "bad",
]


def build_tiny_model(directory: Path, *, hidden: int = 32, layers: int = 4, seed: int = 0) -> Path:
    """Save a 4-layer BERT with random weights and a word-level vocabulary."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    digits = list("0123456789")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *digits,
        *list(".,:;-=()"),
        *[f"##{d}" for d in digits],
    ]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(directory, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random BERT usable as ``model=...`` anywhere."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-bert")))


def synthetic_pool(seed: int = 0, noise: float = 0.05) -> pd.DataFrame:
    """A 400-candidate text pool; the best candidates contain the rare word 'fox'.

    The value adds a graded effect of the colour, a smaller one of the place, and a large
    bonus for 'fox' (1 animal in 10), so a model that reads the words can home in on it.
    """
    rng = np.random.default_rng(seed)
    colors = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
    animals = ["cat", "dog", "fox", "owl", "bee", "eel", "yak", "emu", "ant", "bat"]
    places = ["forest", "desert", "river", "city", "farm"]
    rows = []
    for ci, c in enumerate(colors):
        for a in animals:
            for pi, p in enumerate(places):
                value = 0.3 * ci + 0.1 * pi + (3.0 if a == "fox" else 0.0) + noise * rng.normal()
                rows.append({"color": c, "animal": a, "place": p, "y": value})
    return pd.DataFrame(rows)


def pool_table(path: Path, seed: int = 2) -> Path:
    """A 60-candidate CSV from :func:`synthetic_pool` (three colours, two places) with an
    explicit id column ``x000``... and the (hidden) target ``y``."""
    frame = synthetic_pool(seed=seed)
    frame = frame[
        frame["color"].isin(["red", "blue", "black"]) & frame["place"].isin(["farm", "river"])
    ]
    frame = frame.reset_index(drop=True)
    frame.insert(0, "id", [f"x{i:03d}" for i in range(len(frame))])
    frame.to_csv(path, index=False)
    return path


def fit_on_cuda(
    model: str, space: CandidateSpace, train: Tensor, y: Tensor, name: str, gp_device: GPDevice
) -> FittedSurrogate:
    """One seeded 40-step fit of deep kernel ``name`` with its encoder on CUDA (float32) and
    its GP algebra on ``gp_device``; used by the GP-placement test and its device script."""
    import torch

    from llmbo.encoders.transformer import EncoderConfig
    from llmbo.surrogates import (
        make_surrogate,
        surrogate_config,
    )
    from llmbo.surrogates.deep_kernel import DeepKernelConfig

    spec = surrogate_config(
        name=name,
        encoder=EncoderConfig(model=model, device="cuda", dtype="float32"),
        deep_kernel=DeepKernelConfig(steps=40, gp_device=gp_device),
    )
    surrogate = make_surrogate(spec)
    surrogate.prepare(space)
    torch.manual_seed(0)
    return surrogate.fit(train, y)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A 40-row regression table (text, label) in words the tiny BERT knows."""
    rng = np.random.default_rng(0)
    colors, animals = ["red", "green", "blue"], ["cat", "dog", "fox"]
    rows = []
    for _ in range(40):
        c, a = rng.choice(colors), rng.choice(animals)
        rows.append({"text": f"the {c} {a}", "label": colors.index(c) + 0.1 * rng.normal()})
    path = tmp_path / "tiny.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
