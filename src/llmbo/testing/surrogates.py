"""The contract of :class:`llmbo.surrogates.base.Surrogate` as a pytest suite over the registry.

Subclass :class:`SurrogateContract` in a test module (its name must start with ``Test``) and
every test below runs once per *case*: by default every name registered in
:data:`llmbo.surrogates.base.SURROGATES`, plus a few variants of the built-in surrogates
(``"static:soft_tokens"``, ...), each fitted on a small synthetic pool with a tiny
random-weight BERT written to a temporary folder (no download)::

    from llmbo.testing.surrogates import SurrogateContract

    class TestRegisteredSurrogates(SurrogateContract):
        pass

A surrogate registered by another project gets the same tests by saying how to configure it
for the contract's pool (:meth:`~SurrogateContract.make_space`: texts
``"{color} {animal} in the {place}"``, categorical columns ``color``, ``animal``,
``place``, SMILES columns ``ligand``, ``base``, ``solvent``, a reaction SMILES column
``rxn`` and numeric columns ``temperature`` and ``hours``); every other case is delegated to ``super()``::

    class TestMySurrogate(SurrogateContract):
        @classmethod
        def surrogate_cases(cls):
            return ["mine"]  # or keep the default: every registered name

        def build_config(self, case, model):
            if case == "mine":
                return MyConfig(encoder=EncoderConfig(model=model, device="cpu"))
            return super().build_config(case, model)

A registered name the suite does not know how to configure **fails** (with a message that
says to override :meth:`~SurrogateContract.build_config`), so a new surrogate cannot skip
the contract silently.

Hooks, each one method: :meth:`~SurrogateContract.surrogate_cases` (what runs),
:meth:`~SurrogateContract.build_config` (a case's config), :meth:`~SurrogateContract.build`
(config -> surrogate; :func:`~llmbo.surrogates.make_surrogate` by default),
:meth:`~SurrogateContract.config_to_dict` / :meth:`~SurrogateContract.config_from_dict`
(the stored form of a config), :meth:`~SurrogateContract.with_encoder_dtype`, and the data:
:meth:`~SurrogateContract.make_space`, :meth:`~SurrogateContract.make_targets`,
:meth:`~SurrogateContract.train_rows`, :meth:`~SurrogateContract.make_encoder_model`.
:attr:`~SurrogateContract.modelless` names the surrogates whose ``fit`` returns ``None``
(random search); :meth:`~SurrogateContract.trains` says which fits optimise an objective.

What every case must do (one test each):

* ``fit`` returns a :class:`~llmbo.surrogates.base.FittedSurrogate` (``None`` only for the
  modelless), with ``N x d`` finite float64 ``features`` and finite float ``losses``;
* training improves its objective: where the fit records ``losses`` (deep kernels trained
  by AdamW, one negative marginal log likelihood per step) the last is below the first, and
  the marginal likelihood of the returned model at its training data is higher than at the
  first evaluation of the fit (the initial hyperparameters; e.g. an L-BFGS fit of a
  fixed-feature GP), observed by recording every GPyTorch marginal likelihood evaluated;
* the posterior at ``k`` pool rows has mean and variance of shape ``k x 1``, float64,
  finite, positive variance; batches ``b x k x d`` give ``b x k x 1`` and agree with the
  unbatched posterior; its mean follows the training data (better than their mean);
* precision: training targets given as float32 fit like float64 ones (features and
  posterior float64 either way); the encoder, where the surrogate has one, may run in
  float32 or bfloat16 (:attr:`~SurrogateContract.encoder_dtypes`);
* :func:`llmbo.acquisition.select_candidates` picks ``q`` distinct available rows;
* the same seed gives the same result: a fresh surrogate, and the same one after
  :meth:`~llmbo.surrogates.base.Surrogate.reset`, reproduce the posterior means and losses
  exactly;
* the config round-trips through its stored (JSON) form to an equal config, and the
  surrogate built from it fits to the same posterior under the same seed;
  :meth:`~llmbo.surrogates.base.Surrogate.config` is JSON and names the surrogate;
* ``fallback(space)`` is ``None`` or a prepared surrogate that fits the same data, and the
  surrogate still fits as before after giving it.

This module imports ``pytest``, a development dependency (``pip install llmbo[dev]``):
``import llmbo`` does not import it. The fingerprint cases need the ``chem`` extra (``rdkit``,
``drfp``) and skip without it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pandas as pd
import pytest
import torch
from gpytorch.mlls import MarginalLogLikelihood
from torch import Tensor

from llmbo.acquisition import select_candidates
from llmbo.space import CandidateSpace
from llmbo.surrogates.base import SURROGATES, FittedSurrogate, Surrogate

__all__ = [
    "FitRecord",
    "ModelContract",
    "SurrogateContract",
    "SurrogateFixtures",
    "UsageContract",
    "build_tiny_bert",
    "case_name",
    "recording_mlls",
]

#: Variants of the built-in surrogates the suite runs besides the bare registry names.
BUILTIN_VARIANTS = (
    "static:soft_tokens",
    "projection:side_features",
    "lora:top_module",
    "token:no_token",
    "token:in_context",
    "token:numeric_side",
)

#: The contract pool: per component, its word in the texts and its SMILES.
LIGANDS = {
    "red": "c1ccc(P(c2ccccc2)c2ccccc2)cc1",
    "green": "CCP(CC)CC",
    "blue": "CC(C)(C)P(C(C)(C)C)C(C)(C)C",
    "black": "COc1ccccc1P(c1ccccc1)c1ccccc1",
}
BASES = {"cat": "[K+].[OH-]", "dog": "CCN(CC)CC", "fox": "[Na+].[O-]C(C)=O"}
SOLVENTS = {"forest": "CO", "desert": "C1CCOC1"}
TEMPLATE = "{color} {animal} in the {place}"


def case_name(case: str) -> str:
    """The registered surrogate of a case: ``"static:soft_tokens"`` -> ``"static"``."""
    return case.split(":", 1)[0]


def build_tiny_bert(
    directory: Path, words: list[str], *, hidden: int = 32, layers: int = 2, seed: int = 0
) -> str:
    """Save a BERT with random weights and a word-level vocabulary of ``words``; returns its
    path (usable as ``EncoderConfig(model=...)``)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = [*special, *dict.fromkeys(w.lower() for w in words)]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast.from_pretrained(directory, do_lower_case=True).save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(directory)
    return str(directory)


@contextlib.contextmanager
def recording_mlls() -> Iterator[list[tuple[MarginalLogLikelihood, float]]]:
    """Record ``(mll, value)`` for every GPyTorch marginal likelihood evaluated inside."""
    calls: list[tuple[MarginalLogLikelihood, float]] = []
    original = MarginalLogLikelihood.__call__

    def call(self: MarginalLogLikelihood, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        calls.append((self, float(out.detach().sum())))
        return out

    with mock.patch.object(MarginalLogLikelihood, "__call__", call):
        yield calls


def _objective_at_fit(mll: MarginalLogLikelihood) -> float:
    """``mll`` of its (fitted) model at the model's training data, on a copy."""
    mll = copy.deepcopy(mll)
    model = mll.model
    mll.train()
    with torch.no_grad():
        out = model(*model.train_inputs)
        return float(mll(out, model.train_targets).sum())


def _posterior(fitted: FittedSurrogate, X: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        post = fitted.model.posterior(X)
    return post.mean, post.variance


def _assert_same_mean(fitted: FittedSurrogate | None, reference: FittedSurrogate | None) -> None:
    """``fitted`` has exactly the posterior mean of ``reference`` (both ``None``: modelless)."""
    if reference is None:
        assert fitted is None
        return
    assert fitted is not None
    torch.testing.assert_close(
        _posterior(fitted, fitted.features)[0],
        _posterior(reference, reference.features)[0],
        rtol=0,
        atol=0,
    )


@dataclass
class FitRecord:
    """One seeded fit of a case: its result and every marginal likelihood it evaluated."""

    fitted: FittedSurrogate | None
    mll_calls: list[tuple[MarginalLogLikelihood, float]] = field(default_factory=list)


class SurrogateFixtures:
    """Hooks a surrogate's test module may override, and the fixtures every test uses."""

    #: Seed of the fits compared with each other.
    seed: ClassVar[int] = 0
    #: AdamW steps of the deep-kernel cases.
    steps: ClassVar[int] = 30
    #: Candidates picked in the acquisition test.
    q: ClassVar[int] = 3
    #: Registered names whose ``fit`` returns ``None`` (no model: random search).
    modelless: ClassVar[frozenset[str]] = frozenset({"random"})
    #: Compute dtypes the encoder of a surrogate that has one must run in.
    encoder_dtypes: ClassVar[tuple[str, ...]] = ("float32", "bfloat16")

    # ------------------------------------------------------------------ hooks
    @classmethod
    def surrogate_cases(cls) -> list[str]:
        """The cases to run: every registered surrogate, then :data:`BUILTIN_VARIANTS`.

        A case is a registered name, optionally followed by ``":variant"``.
        """
        import llmbo.surrogates.factory  # noqa: F401  (registers the built-in surrogates)

        names = SURROGATES.names()
        return [*names, *(v for v in BUILTIN_VARIANTS if case_name(v) in names)]

    def build_config(self, case: str, model: str) -> Any:
        """The config of ``case`` for the pool of :meth:`make_space`; ``model`` is the path
        of the tiny transformer (:meth:`make_encoder_model`) for surrogates that read texts.

        Fails for a case it does not know: a project that registers a surrogate overrides
        this method for its own names and calls ``super()`` for the others.
        """
        from llmbo.encoders.transformer import EncoderConfig
        from llmbo.surrogates.config import surrogate_config
        from llmbo.surrogates.deep_kernel import DeepKernelConfig

        encoder = EncoderConfig(model=model, device="cpu", dtype="float32", max_length=16)
        deep = DeepKernelConfig(steps=self.steps, projection_dim=8)
        columns = {"columns": ["color", "animal", "place"]}
        texts = {"encoder": encoder, "deep_kernel": deep}
        known: dict[str, tuple[str, dict[str, Any]]] = {
            "random": ("random", {}),
            "static": ("static", {"encoder": encoder}),
            "static:soft_tokens": ("static", {**texts, "soft_tokens": 2}),
            "projection": ("projection", texts),
            "projection:side_features": (
                "projection",
                {**texts, "side_features": "onehot", "side_featurizer": columns},
            ),
            "lora": ("lora", texts),
            "lora:top_module": ("lora", {**texts, "top_module": "output"}),
            "drfp": ("drfp", {"featurizer": {"column": "rxn", "n_bits": 256}}),
            "morgan": (
                "morgan",
                {"featurizer": {"columns": ["ligand", "base", "solvent"], "n_bits": 256}},
            ),
            "onehot": ("onehot", {"featurizer": columns}),
            "components": ("components", {"featurizer": columns}),
            "numeric": ("numeric", {"featurizer": {"columns": ["temperature", "hours"]}}),
            "token": ("token", {"encoder": encoder, "deep_kernel": deep}),
            "token:no_token": ("token", {"encoder": encoder, "deep_kernel": deep, "token": False}),
            "token:in_context": (
                "token",
                {"encoder": encoder, "deep_kernel": deep, "in_context": True},
            ),
            "token:numeric_side": (
                "token",
                {
                    "encoder": encoder,
                    "deep_kernel": dataclasses.replace(deep, side_fit="fixed"),
                    "side_features": "numeric",
                    "side_featurizer": {"columns": ["temperature", "hours"]},
                },
            ),
        }
        if case not in known:
            pytest.fail(
                f"The surrogate contract does not know how to configure {case!r} "
                f"(registered surrogates: {SURROGATES.names()}). Every registered surrogate "
                f"must pass it: subclass llmbo.testing.surrogates.SurrogateContract and "
                f"override build_config(case, model) to return the config of {case!r} for "
                f"the contract's pool (make_space), calling super() for the other cases.",
                pytrace=False,
            )
        name, fields = known[case]
        if name == "drfp":
            pytest.importorskip("drfp", reason="the drfp case needs llmbo[chem]")
        if name in ("drfp", "morgan"):
            pytest.importorskip("rdkit", reason=f"the {name} case needs llmbo[chem]")
        return surrogate_config(name, **fields)

    def build(self, config: Any) -> Surrogate:
        """The (unprepared) surrogate a config describes."""
        from llmbo.surrogates.factory import make_surrogate

        return make_surrogate(config)

    def config_to_dict(self, config: Any) -> dict[str, Any]:
        """The form of ``config`` stored in a study (JSON-serialisable)."""
        return config.to_dict()  # type: ignore[no-any-return]

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        """Rebuild a config from :meth:`config_to_dict` output."""
        from llmbo.surrogates.config import surrogate_config_from_dict

        return surrogate_config_from_dict(data)

    def with_encoder_dtype(self, config: Any, dtype: str) -> Any | None:
        """``config`` with its encoder computing in ``dtype``; ``None``: it has no encoder."""
        encoder = getattr(config, "encoder", None)
        if encoder is None:
            return None
        return dataclasses.replace(config, encoder=dataclasses.replace(encoder, dtype=dtype))

    def trains(self, case: str) -> bool:
        """Whether fitting ``case`` optimises an objective (marginal likelihood or ``losses``)."""
        return case_name(case) not in self.modelless

    def make_space(self) -> CandidateSpace:
        """24 candidates: ligand x base x solvent, as words (texts), categories and SMILES."""
        rows = [
            {
                "color": color,
                "animal": animal,
                "place": place,
                "ligand": ligand,
                "base": base,
                "solvent": solvent,
                "rxn": f"Brc1ccccc1.{ligand}.{base}>{solvent}>c1ccc(-c2ccccc2)cc1",
                "temperature": 20.0 + 15.0 * i + 5.0 * k,
                "hours": 0.5 * 4.0**j,
            }
            for i, (color, ligand) in enumerate(LIGANDS.items())
            for j, (animal, base) in enumerate(BASES.items())
            for k, (place, solvent) in enumerate(SOLVENTS.items())
        ]
        return CandidateSpace(pd.DataFrame(rows), TEMPLATE)

    def make_targets(self, space: CandidateSpace) -> Tensor:
        """A learnable objective of every candidate (float64, one per row): graded effects
        of the ligand and solvent, a large bonus for one base, a little fixed noise."""
        frame = space.frame
        ligand = frame["color"].map({c: i for i, c in enumerate(LIGANDS)}).to_numpy()
        solvent = frame["place"].map({p: i for i, p in enumerate(SOLVENTS)}).to_numpy()
        bonus = (frame["animal"] == "fox").to_numpy()
        value = torch.tensor(0.5 * ligand + 0.3 * solvent + 1.5 * bonus, dtype=torch.float64)
        noise = torch.randn(len(space), generator=torch.Generator().manual_seed(1))
        return value + 0.05 * noise.to(torch.float64)

    def train_rows(self, space: CandidateSpace) -> Tensor:
        """The observed rows (every other one); the rest are available to acquisition."""
        return torch.arange(0, len(space), 2)

    def make_encoder_model(self, directory: Path) -> str:
        """The transformer of the text surrogates: a tiny random BERT reading the pool's words."""
        words = [*LIGANDS, *BASES, *SOLVENTS, *TEMPLATE.replace("{", " ").split()]
        return build_tiny_bert(directory, [w for w in words if w.isalpha()])

    # --------------------------------------------------------------- fixtures
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "surrogate_case" in metafunc.fixturenames:
            metafunc.parametrize("surrogate_case", self.surrogate_cases(), scope="class")

    # Class-scoped fixtures are classmethods (pytest's rule); they call the hooks on an
    # instance of the (sub)class, as the tests do.
    @pytest.fixture(scope="class")
    @classmethod
    def encoder_model(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return cls().make_encoder_model(tmp_path_factory.mktemp("contract-encoder"))

    @pytest.fixture(scope="class")
    @classmethod
    def space(cls) -> CandidateSpace:
        return cls().make_space()

    @pytest.fixture(scope="class")
    @classmethod
    def targets(cls, space: CandidateSpace) -> Tensor:
        y = cls().make_targets(space)
        assert y.shape == (len(space),), "make_targets must give one value per candidate"
        return y

    @pytest.fixture(scope="class")
    @classmethod
    def config(cls, surrogate_case: str, encoder_model: str) -> Any:
        return cls().build_config(surrogate_case, encoder_model)

    def fresh(self, config: Any, space: CandidateSpace) -> Surrogate:
        """A newly built surrogate of ``config``, prepared for ``space``."""
        surrogate = self.build(config)
        surrogate.prepare(space)
        return surrogate

    def seeded_fit(
        self, surrogate: Surrogate, space: CandidateSpace, y: Tensor
    ) -> FittedSurrogate | None:
        """Fit ``surrogate`` on :meth:`train_rows` of ``y`` under :attr:`seed`."""
        rows = self.train_rows(space)
        torch.manual_seed(self.seed)
        return surrogate.fit(rows, y[rows])

    @pytest.fixture
    def surrogate(self, config: Any, space: CandidateSpace) -> Surrogate:
        """A fresh prepared surrogate of the case (for tests that change it)."""
        return self.fresh(config, space)

    @pytest.fixture(scope="class")
    @classmethod
    def fit_record(cls, config: Any, space: CandidateSpace, targets: Tensor) -> FitRecord:
        """The reference fit of the case, shared by the tests that only read it."""
        self = cls()
        surrogate = self.fresh(config, space)
        with recording_mlls() as calls:
            fitted = self.seeded_fit(surrogate, space, targets)
        return FitRecord(fitted, calls)

    @pytest.fixture
    def fitted(self, fit_record: FitRecord, surrogate_case: str) -> FittedSurrogate:
        if fit_record.fitted is None:
            pytest.skip(f"{surrogate_case} has no model (fit returns None)")
        return fit_record.fitted


class ModelContract(SurrogateFixtures):
    """The fit and its model: features, training, posterior, precision."""

    def test_fit_returns_fitted_surrogate(
        self, surrogate_case: str, fit_record: FitRecord, space: CandidateSpace
    ) -> None:
        fitted = fit_record.fitted
        if case_name(surrogate_case) in self.modelless:
            assert fitted is None, f"{surrogate_case} is modelless: fit must return None"
            return
        assert isinstance(fitted, FittedSurrogate), (
            f"fit of {surrogate_case} returned {fitted!r}; only {sorted(self.modelless)} "
            "(SurrogateContract.modelless) may return None"
        )
        feats = fitted.features
        assert feats.ndim == 2 and feats.shape[0] == len(space) and feats.shape[1] >= 1
        assert feats.dtype == torch.float64
        assert bool(torch.isfinite(feats).all())
        assert not feats.requires_grad
        assert isinstance(fitted.losses, list)
        assert all(isinstance(v, float) for v in fitted.losses)
        assert all(torch.isfinite(torch.tensor(fitted.losses)).tolist())
        assert fitted.fallback is None  # the requested fit itself succeeded
        assert not fitted.model.training, "the fitted model must be in eval mode"

    def test_training_improves_objective(
        self, surrogate_case: str, fitted: FittedSurrogate, fit_record: FitRecord
    ) -> None:
        if not self.trains(surrogate_case):
            pytest.skip(f"{surrogate_case} does not train (SurrogateContract.trains)")
        losses = fitted.losses
        if losses:
            assert len(losses) >= 2, "losses must be recorded per optimisation step"
            assert losses[-1] < losses[0], (
                f"{surrogate_case}: training did not lower its loss ({losses[0]:.4g} -> "
                f"{losses[-1]:.4g})"
            )
        own = [(m, v) for m, v in fit_record.mll_calls if m.model is fitted.model]
        if not own:
            assert losses, (
                f"{surrogate_case}: fit evaluated no marginal likelihood of the returned model "
                "and recorded no losses; if it does not train, override "
                "SurrogateContract.trains"
            )
            return
        mll, initial = own[0]
        final = _objective_at_fit(mll)
        assert final > initial, (
            f"{surrogate_case}: the fitted {type(mll).__name__} ({final:.4g}) is not above "
            f"its value at the start of the fit ({initial:.4g})"
        )

    def test_posterior_shapes_and_dtypes(self, fitted: FittedSurrogate) -> None:
        feats = fitted.features
        n, d = feats.shape
        rows = torch.tensor([0, 3, 5, n - 2, n - 1])
        mean, var = _posterior(fitted, feats[rows])
        assert mean.shape == (5, 1) and var.shape == (5, 1)
        assert mean.dtype == torch.float64 and var.dtype == torch.float64
        assert bool(torch.isfinite(mean).all()) and bool(torch.isfinite(var).all())
        assert bool((var > 0).all())
        pool_mean, pool_var = _posterior(fitted, feats)
        assert pool_mean.shape == (n, 1) and bool(torch.isfinite(pool_mean).all())
        assert bool((pool_var > 0).all())
        # b x k x d: b independent posteriors of k points, each as if asked for alone.
        batch = feats[torch.arange(6)].reshape(2, 3, d)
        b_mean, b_var = _posterior(fitted, batch)
        assert b_mean.shape == (2, 3, 1) and b_var.shape == (2, 3, 1)
        assert b_mean.dtype == torch.float64
        for i in range(2):
            one_mean, one_var = _posterior(fitted, batch[i])
            torch.testing.assert_close(b_mean[i], one_mean, rtol=1e-6, atol=1e-8)
            torch.testing.assert_close(b_var[i], one_var, rtol=1e-6, atol=1e-8)

    def test_posterior_follows_training_data(
        self, fitted: FittedSurrogate, space: CandidateSpace, targets: Tensor
    ) -> None:
        rows = self.train_rows(space)
        mean, _ = _posterior(fitted, fitted.features[rows])
        y = targets[rows]
        residual = float(((mean.squeeze(-1) - y) ** 2).sum())
        spread = float(((y - y.mean()) ** 2).sum())
        assert residual < spread, "the posterior mean explains less than the training mean"

    def test_float32_targets(
        self, config: Any, space: CandidateSpace, targets: Tensor, fit_record: FitRecord
    ) -> None:
        fitted32 = self.seeded_fit(self.fresh(config, space), space, targets.to(torch.float32))
        if fit_record.fitted is None:
            assert fitted32 is None
            return
        assert fitted32 is not None
        assert fitted32.features.dtype == torch.float64
        mean32, var32 = _posterior(fitted32, fitted32.features)
        assert mean32.dtype == torch.float64 and var32.dtype == torch.float64
        mean64, _ = _posterior(fit_record.fitted, fit_record.fitted.features)
        scale = float(targets.std())
        torch.testing.assert_close(mean32, mean64, rtol=0, atol=1e-3 * scale)

    def test_encoder_precision(
        self, surrogate_case: str, config: Any, space: CandidateSpace, targets: Tensor
    ) -> None:
        if self.with_encoder_dtype(config, self.encoder_dtypes[0]) is None:
            pytest.skip(f"{surrogate_case} has no encoder")
        for dtype in self.encoder_dtypes:
            variant = self.with_encoder_dtype(config, dtype)
            fitted = self.seeded_fit(self.fresh(variant, space), space, targets)
            assert fitted is not None
            assert fitted.features.dtype == torch.float64, dtype
            assert bool(torch.isfinite(fitted.features).all()), dtype
            mean, var = _posterior(fitted, fitted.features)
            assert mean.dtype == torch.float64, dtype
            assert bool(torch.isfinite(mean).all()) and bool((var > 0).all()), dtype
            if fitted.losses:
                assert fitted.losses[-1] < fitted.losses[0], dtype


class UsageContract(SurrogateFixtures):
    """What the proposer relies on: acquisition, reproducibility, configs, fallbacks."""

    def test_acquisition_picks_distinct_available_rows(
        self, fit_record: FitRecord, space: CandidateSpace, targets: Tensor
    ) -> None:
        rows = self.train_rows(space)
        observed = set(rows.tolist())
        available = torch.tensor([i for i in range(len(space)) if i not in observed])
        pending = available[:2]
        available = available[2:]
        picked = select_candidates(
            fit_record.fitted,
            available,
            self.q,
            best_f=float(targets[rows].max()),
            pending=pending,
            seed=self.seed,
        )
        assert picked.dtype == torch.long and picked.shape == (self.q,)
        assert len(set(picked.tolist())) == self.q
        assert set(picked.tolist()) <= set(available.tolist())

    def test_same_seed_same_result(
        self, surrogate: Surrogate, space: CandidateSpace, targets: Tensor, fit_record: FitRecord
    ) -> None:
        again = self.seeded_fit(surrogate, space, targets)
        surrogate.reset()
        refit = self.seeded_fit(surrogate, space, targets)
        reference = fit_record.fitted
        if reference is None:
            assert again is None and refit is None
            return
        assert again is not None and refit is not None
        mean, var = _posterior(reference, reference.features)
        for other, what in ((again, "a fresh surrogate"), (refit, "a refit after reset()")):
            torch.testing.assert_close(other.features, reference.features, rtol=0, atol=0)
            assert other.losses == reference.losses, what
            other_mean, other_var = _posterior(other, other.features)
            torch.testing.assert_close(other_mean, mean, rtol=0, atol=0, msg=what)
            torch.testing.assert_close(other_var, var, rtol=0, atol=0, msg=what)

    def test_config_round_trip(
        self,
        surrogate_case: str,
        config: Any,
        surrogate: Surrogate,
        space: CandidateSpace,
        targets: Tensor,
        fit_record: FitRecord,
    ) -> None:
        stored = json.loads(json.dumps(self.config_to_dict(config)))
        assert stored == self.config_to_dict(config)
        rebuilt = self.config_from_dict(stored)
        assert rebuilt == config
        assert self.config_to_dict(rebuilt) == stored
        described = surrogate.config()
        assert json.loads(json.dumps(described)) == described
        assert described["name"] == case_name(surrogate_case)
        again = self.fresh(rebuilt, space)
        assert again.config() == described
        _assert_same_mean(self.seeded_fit(again, space, targets), fit_record.fitted)

    def test_fallback(
        self, surrogate: Surrogate, space: CandidateSpace, targets: Tensor, fit_record: FitRecord
    ) -> None:
        self.seeded_fit(surrogate, space, targets)
        fallback = surrogate.fallback(space)
        if fallback is not None:
            assert isinstance(fallback, Surrogate)
            assert isinstance(fallback.config()["name"], str)
            fitted = self.seeded_fit(fallback, space, targets)  # prepared already
            assert isinstance(fitted, FittedSurrogate)
            assert fitted.features.shape[0] == len(space)
            assert fitted.features.dtype == torch.float64
            mean, var = _posterior(fitted, fitted.features)
            assert mean.shape == (len(space), 1) and mean.dtype == torch.float64
            assert bool(torch.isfinite(mean).all()) and bool((var > 0).all())
        # Giving a fallback leaves the surrogate as it was: later fits are unchanged.
        _assert_same_mean(self.seeded_fit(surrogate, space, targets), fit_record.fitted)


class SurrogateContract(ModelContract, UsageContract):
    """Every rule of the surrogate interface, run once per case (see the module doc)."""
