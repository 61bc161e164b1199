"""Every registered surrogate under the contract suite, plus checks of the suite itself.

The surrogate-generic tests live in :class:`llmbo.testing.surrogates.SurrogateContract`;
``TestRegisteredSurrogates`` runs them for every name in ``SURROGATES`` (and a few variants),
``TestUnregisteredSurrogate`` shows a downstream surrogate with its own config form plugging
in through the hooks.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmbo.encoders.fingerprints import OneHotFeaturizer
from llmbo.surrogates.base import SURROGATES, Surrogate
from llmbo.surrogates.feature_gp import FeatureGP
from llmbo.testing.surrogates import SurrogateContract, case_name


class TestRegisteredSurrogates(SurrogateContract):
    """The contract for llmbo's own surrogates."""


class TestUnregisteredSurrogate(SurrogateContract):
    """A surrogate of another project, configured by a plain dict and built by hand."""

    @classmethod
    def surrogate_cases(cls) -> list[str]:
        return ["onehot-ard"]

    def build_config(self, case: str, model: str) -> Any:
        if case == "onehot-ard":
            return {"name": "onehot-ard", "columns": ["color", "animal", "place"]}
        return super().build_config(case, model)

    def build(self, config: Any) -> Surrogate:
        if isinstance(config, dict):
            featurizer = OneHotFeaturizer(columns=config["columns"])
            return FeatureGP(featurizer, kernel="matern-ard", name=config["name"])
        return super().build(config)

    def config_to_dict(self, config: Any) -> dict[str, Any]:
        return dict(config)

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        return dict(data)


def test_cases_cover_every_registered_surrogate() -> None:
    cases = TestRegisteredSurrogates.surrogate_cases()
    assert {case_name(c) for c in cases} == set(SURROGATES.names())
    assert len(cases) == len(set(cases))


def test_unknown_surrogate_fails_with_instructions() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"'newgp'.*override build_config"):
        SurrogateContract().build_config("newgp", "unused-model-path")
