"""Integration: short real campaigns with the packaged all-MiniLM-L6-v2 (offline)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from conftest import synthetic_pool
from llmbo.encoders.transformer import EncoderConfig, TextEncoder, resolve_model_path
from llmbo.optimizer import Optimizer, TableObjective
from llmbo.space import CandidateSpace
from llmbo.surrogates import surrogate_config
from llmbo.surrogates.deep_kernel import DeepKernelConfig

pytestmark = pytest.mark.slow

N_INIT = 5
ITERATIONS = 12


@pytest.fixture(scope="module")
def space() -> CandidateSpace:
    frame = synthetic_pool(seed=4).sample(n=60, random_state=2).reset_index(drop=True)
    return CandidateSpace(frame, "A {color} {animal} in the {place}.")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_packaged_minilm_loads_offline() -> None:
    path = resolve_model_path("minilm")
    encoder = TextEncoder(EncoderConfig(model="minilm", device="cpu"))
    assert encoder.hidden_size == 384 and encoder.n_layers == 6
    assert encoder.n_top == 1  # 25 % of 6 layers
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == path
    feats = encoder.prepare(["a red fox", "a red fox in the forest", "a blue cat"]).embed()
    # A real sentence encoder: related sentences are closer than unrelated ones.
    cos = torch.nn.functional.cosine_similarity
    assert cos(feats[0], feats[1], dim=0) > cos(feats[0], feats[2], dim=0)


@pytest.mark.parametrize("name", ["projection", "lora"])
def test_short_campaign_finds_a_good_candidate(space: CandidateSpace, name: str) -> None:
    y = space.frame["y"].to_numpy()
    n_fox = int((space.frame["animal"] == "fox").sum())
    assert 3 <= n_fox <= 10
    spec = surrogate_config(
        name=name,
        encoder=EncoderConfig(model="minilm", device="cpu"),
        deep_kernel=DeepKernelConfig(steps=30),
    )
    opt = Optimizer(space, spec, seed=0, progress=False)
    below = [cid for cid, v in zip(space.ids, y, strict=True) if v < np.median(y)]
    start = list(np.random.default_rng(0).choice(below, N_INIT, replace=False))
    opt.tell(start, [float(y[space.index_of(c)[0]]) for c in start])
    history = opt.run(TableObjective(space, "y"), iterations=ITERATIONS)

    assert len(history) == N_INIT + ITERATIONS
    assert set(history["state"]) == {"complete"}
    assert history["candidate_id"].is_unique
    assert history["text"].tolist() == [space.text(c) for c in history["candidate_id"]]
    assert opt.last_fit["n_train"] == N_INIT + ITERATIONS - 1
    assert opt.last_fit["losses"] and opt.last_fit["fallback"] is None
    # "fox" adds 3 to the value: every fox beats every other candidate. Starting from
    # below-median points, the campaign must find one, i.e. a top-10 % candidate.
    best = opt.best(1)
    assert best["animal"].item() == "fox"
    assert best["value"].item() >= np.quantile(y, 0.9)
