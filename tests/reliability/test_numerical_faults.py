"""Numerical faults: Cholesky failures, degenerate targets and features never stop a campaign.

The deep kernel retries a not-positive-definite fit with growing jitter; if it still fails,
the optimizer falls back to a GP on the frozen embeddings (the ``static`` surrogate of the
same model), then to a random choice, logging a warning each time and recording the
fallback in ``last_fit["fallback"]``.
"""

from __future__ import annotations

import logging

import gpytorch
import numpy as np
import pandas as pd
import pytest
import torch
from _fixtures import word_model_fixture  # noqa: F401  (fixture)
from linear_operator.utils.errors import NotPSDError

import llmbo.proposers.bayesian as bayesian_module
from llmbo.encoders.transformer import EncoderConfig
from llmbo.errors import DuplicateCandidatesError
from llmbo.optimizer import Optimizer
from llmbo.space import CandidateSpace
from llmbo.storage import TrialState
from llmbo.surrogates import SurrogateConfig, surrogate_config
from llmbo.surrogates.deep_kernel import DeepKernelConfig, DeepKernelGP
from llmbo.surrogates.feature_gp import FeatureGP

# "zebra"/"giraffe" are not in the tiny vocabulary (both read as [UNK]) and the tokenizer
# lower-cases, so e.g. "zebra cat" = "giraffe cat" and "Red cat" = "red cat" as features.
WORDS = ["red", "blue", "Red", "zebra", "giraffe"]
ANIMALS = ["cat", "dog", "fox"]


def word_space() -> CandidateSpace:
    frame = pd.DataFrame(
        [{"w": w, "a": a, "site": "lab 1"} for w in WORDS for a in ANIMALS]  # site: constant
    )
    return CandidateSpace(frame, "{w} {a}")


def spec(name: str, model: str) -> SurrogateConfig:
    if name in ("onehot", "components", "drfp", "morgan"):
        return surrogate_config(name=name)
    return surrogate_config(
        name=name,
        encoder=EncoderConfig(model=model, device="cpu"),
        deep_kernel=DeepKernelConfig(steps=5),
    )


def make(name: str, model: str, **kwargs: object) -> Optimizer:
    return Optimizer(word_space(), spec(name, model), progress=False, min_observations=1, **kwargs)  # type: ignore[arg-type]


def in_state(opt: Optimizer, state: TrialState) -> set[str]:
    """Candidate ids of the study's trials in ``state`` (read from the storage)."""
    return {t.candidate_id for t in opt.storage.trials(opt.study.study_id, states=[state])}


# ------------------------------------------------------------------ Cholesky failures
def test_cholesky_failure_retries_with_jitter_then_falls_back_to_static(
    word_model: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    jitters: list[float] = []

    def not_psd(self: DeepKernelGP, *args: object, **kwargs: object) -> None:
        jitters.append(gpytorch.settings.cholesky_jitter.value(torch.float64))
        raise NotPSDError("Matrix not positive definite after repeatedly adding jitter")

    monkeypatch.setattr(DeepKernelGP, "_fit", not_psd)
    opt = make("projection", word_model, seed=1)
    space = opt.space
    opt.tell(space.ids[:4], [0.1, 0.5, 0.2, 0.9])
    with caplog.at_level(logging.WARNING, logger="llmbo"):
        (cid,) = opt.ask(1)
    assert len(jitters) == 4 and jitters == sorted(jitters) and jitters[0] < jitters[-1]
    assert opt.last_fit["fallback"] == "static"
    assert cid in space and cid not in space.ids[:4]
    assert "falling back to a GP on fixed features (static)" in caplog.text
    # The same study and seed make the same choice again (the fallback is deterministic).
    again = make("projection", word_model, seed=1)
    again.tell(space.ids[:4], [0.1, 0.5, 0.2, 0.9])
    assert again.ask(1) == [cid]


def test_fallback_gp_failing_too_gives_a_random_choice(
    word_model: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def not_psd(self: object, *args: object, **kwargs: object) -> None:
        raise NotPSDError("not positive definite")

    monkeypatch.setattr(DeepKernelGP, "_fit", not_psd)
    monkeypatch.setattr(FeatureGP, "fit", not_psd)
    opt = make("lora", word_model)
    opt.tell(opt.space.ids[:3], [1.0, 2.0, 3.0])
    with caplog.at_level(logging.WARNING, logger="llmbo"):
        ids = opt.ask(2)
    assert opt.last_fit["fallback"] == "random"
    assert len(set(ids)) == 2 and not set(ids) & set(opt.space.ids[:3])
    assert caplog.text.count("WARNING") >= 2  # one for each fallback
    assert "choosing at random" in caplog.text


def test_acquisition_failure_falls_back_to_random(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = bayesian_module.select_candidates

    def broken(fitted: object, *args: object, **kwargs: object) -> torch.Tensor:
        if fitted is not None:
            raise NotPSDError("posterior covariance not positive definite")
        return real(fitted, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bayesian_module, "select_candidates", broken)
    opt = Optimizer(word_space(), "onehot", progress=False, min_observations=1)
    opt.tell(opt.space.ids[:2], [0.0, 1.0])
    with caplog.at_level(logging.WARNING, logger="llmbo"):
        assert len(opt.ask(3)) == 3
    assert opt.last_fit["fallback"] == "random"
    assert "Acquisition on the" in caplog.text


def test_components_fit_failure_falls_back_to_tanimoto_on_the_one_hot_part(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback of the components GP drops the codes and the constant "site" column."""
    real = FeatureGP.fit

    def fails_for_components(self: FeatureGP, *args: object, **kwargs: object) -> object:
        if self.kernel == "components":
            raise NotPSDError("not positive definite")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FeatureGP, "fit", fails_for_components)
    opt = Optimizer(word_space(), "components", progress=False, min_observations=1)
    opt.tell(opt.space.ids[:3], [0.0, 1.0, 0.5])
    with caplog.at_level(logging.WARNING, logger="llmbo"):
        ids = opt.ask(2)
    assert opt.last_fit["fallback"] == "components-regularised"
    assert len(set(ids)) == 2 and not set(ids) & set(opt.space.ids[:3])
    backup = opt.proposer.fallback_surrogate
    assert backup.kernel == "tanimoto"
    assert backup.features_.shape[1] == len(WORDS) + len(ANIMALS)  # one-hot of w and a


def test_other_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only numerical failures fall back; a bug still surfaces."""

    def bug(self: object, *args: object, **kwargs: object) -> None:
        raise KeyError("a programming error")

    monkeypatch.setattr(FeatureGP, "fit", bug)
    opt = Optimizer(word_space(), "onehot", progress=False, min_observations=1)
    opt.tell(opt.space.ids[:2], [0.0, 1.0])
    with pytest.raises(KeyError, match="programming error"):
        opt.ask(1)


# ------------------------------------------------------------- degenerate observations
TARGETS = {
    "constant": lambda n: [4.2] * n,
    "single": lambda n: [7.0],
    "huge": lambda n: list(1e12 + 1e11 * np.arange(n)),
    "tiny": lambda n: list(1e-12 * np.arange(n)),
    "huge-constant": lambda n: [-3e15] * n,
}


@pytest.mark.parametrize("surrogate", ["onehot", "static", "projection"])
@pytest.mark.parametrize("case", list(TARGETS))
def test_degenerate_targets_give_valid_suggestions(
    surrogate: str, case: str, word_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    opt = make(surrogate, word_model, seed=2)
    values = TARGETS[case](5)
    # Includes feature duplicates: "zebra cat"/"giraffe cat" and "red cat"/"Red cat".
    observed = [opt.space.ids[i] for i in (0, 9, 12, 3, 6)][: len(values)]
    opt.tell(observed, values)
    handed_out: list[str] = []
    for minimize in (False, True):
        opt.maximize = not minimize
        measured, pending = in_state(opt, TrialState.COMPLETE), in_state(opt, TrialState.PENDING)
        assert measured == set(observed) and pending == set(handed_out)
        ids = opt.ask(2)
        assert len(ids) == 2 and len(set(ids)) == 2, f"repeated suggestion: {ids}"
        assert all(cid in opt.space for cid in ids), f"not in the space: {ids}"
        assert not set(ids) & measured, f"already measured: {sorted(set(ids) & measured)}"
        assert not set(ids) & pending, f"already pending: {sorted(set(ids) & pending)}"
        assert opt.last_fit["n_train"] == len(values)
        assert opt.last_fit["fallback"] in (None, "static", f"{surrogate}-regularised", "random")
        handed_out += ids  # stay pending: the second ask must avoid them too
    opt.fail(handed_out, "not measured")
    assert in_state(opt, TrialState.PENDING) == set()


def test_all_candidates_with_the_same_embedding(word_model: str) -> None:
    """Every word outside the vocabulary reads as [UNK]: all candidates embed identically."""
    frame = pd.DataFrame({"w": ["zebra", "okapi", "giraffe", "tapir"], "a": ["lion"] * 4})
    space = CandidateSpace(frame, "{w} {a}")
    for name in ("static", "projection"):
        opt = Optimizer(space, spec(name, word_model), progress=False, min_observations=1)
        opt.tell(space.ids[:2], [1.0, 2.0])
        ids = opt.ask(2)
        assert sorted(ids) == sorted(space.ids[2:])
        assert opt.last_fit["fallback"] in (None, "random")


def test_constant_feature_columns(caplog: pytest.LogCaptureFixture) -> None:
    """A table column with one value gives a constant one-hot column (zero range)."""
    opt = Optimizer(word_space(), "onehot", progress=False, min_observations=1)
    opt.tell(opt.space.ids[:2], [0.0, 1.0])
    assert len(opt.ask(2)) == 2
    assert opt.last_fit["fallback"] in (None, "onehot-regularised")


def test_rows_differing_only_in_ignored_columns_are_duplicates() -> None:
    frame = pd.DataFrame({"w": ["red", "red", "blue"], "batch": [1, 2, 3]})
    with pytest.raises(DuplicateCandidatesError, match="repeat an earlier candidate's text"):
        CandidateSpace(frame, "{w}")
    assert len(CandidateSpace(frame, "{w}", on_duplicate="drop")) == 2
