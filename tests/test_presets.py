"""Registered presets: what a table offers, what each preset makes of it, and that the
benchmark methods, the library and the CLI run the same configurations."""

from __future__ import annotations

import pandas as pd
import pytest

from llmbo.acquisition import AcquisitionConfig
from llmbo.errors import InputError
from llmbo.presets import DEFAULT_PRESET, PRESETS, TableColumns, resolve_surrogate
from llmbo.space import CandidateSpace


def _screen(n_solvents: int = 3) -> pd.DataFrame:
    """A full factorial screen: 4 ligands x 3 bases x ``n_solvents`` solvents."""
    rows = [
        {"ligand": f"L{i}", "base": b, "solvent": f"S{s}", "temp": 60, "y": float(i + s)}
        for i in range(4)
        for b in ("K2CO3", "Cs2CO3", "DBU")
        for s in range(n_solvents)
    ]
    return pd.DataFrame(rows)


def test_a_screen_of_categorical_columns_gets_the_components_gp_with_outcome_power_2() -> None:
    space = CandidateSpace(_screen(), "{ligand}, {base}, {solvent}, at {temp} C")
    columns = TableColumns.detect(space)
    assert columns.categorical == ("ligand", "base", "solvent")
    assert columns.constant == ("temp",)  # one value: tells no candidates apart
    assert columns.separator == ", "  # the text the between-field literals start with
    choice = PRESETS.get(DEFAULT_PRESET).resolve(columns)
    assert choice.spec.name == "components"
    assert choice.spec.featurizer == {"columns": ["ligand", "base", "solvent"]}
    assert choice.acquisition == {"acquisition.outcome_power": 2.0}
    assert "categorical" in choice.reason and "ligand" in choice.reason


def test_a_free_text_column_sends_the_default_to_the_lora_deep_kernel() -> None:
    frame = _screen()
    frame["note"] = [f"run {i} with a fresh bottle" for i in range(len(frame))]
    space = CandidateSpace(frame, "{ligand}, {base}, {solvent}; {note}")
    choice = resolve_surrogate(DEFAULT_PRESET, space)
    assert choice.spec.name == "lora"
    assert choice.spec.top_module == "auto"  # the cached fast path that was measured
    assert choice.acquisition == {}
    assert "['note'] are not categorical" in choice.reason


def test_smiles_and_reaction_smiles_columns_are_detected() -> None:
    pytest.importorskip("rdkit")
    frame = pd.DataFrame(
        {
            "smiles": ["CCO", "c1ccccc1", "CC(=O)O", "CCN"],
            "rxn": ["CCO>>CC=O", "CC>>C=C", "CO>>C=O", "CCN>>CC=N"],
            "name": ["ethanol", "benzene", "acetic acid", "ethylamine"],
            "y": [1.0, 2.0, 3.0, 4.0],
        }
    )
    columns = TableColumns.detect(CandidateSpace(frame, "{name}"))
    assert columns.smiles == ("smiles",)  # names with spaces are not SMILES
    assert columns.reaction_smiles == "rxn"
    morgan = PRESETS.get("morgan").resolve(columns).spec
    assert morgan.featurizer == {"columns": ["smiles"]}
    assert PRESETS.get("drfp").resolve(columns).spec.featurizer == {"column": "rxn"}


def test_a_preset_that_lacks_its_columns_says_what_it_needs() -> None:
    frame = pd.DataFrame({"text": ["alpha beta", "gamma delta", "eps zeta"], "y": [1, 2, 3]})
    space = CandidateSpace(frame, "{text}")
    with pytest.raises(InputError, match="needs SMILES columns"):
        resolve_surrogate("morgan", space)
    # Without categorical columns, components falls back to its featurizer's own choice.
    assert resolve_surrogate("components", space).spec.featurizer == {}
    with pytest.raises(InputError, match="needs a template whose fields are separated"):
        resolve_surrogate("lora-seg", space)
    with pytest.raises(InputError, match="Unknown surrogate or preset 'nope'"):
        resolve_surrogate("nope", space)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Ligand: {a}; aryl halide: {b}; additive: {c}", "; "),  # not the shared 'a'
        ("{a}\n{b}", "\n"),
        ("{a} in {b} at {c}", None),  # spaces alone would split the values' own words
        ("{a}", None),
    ],
)
def test_the_separator_between_template_fields(template: str, expected: str | None) -> None:
    frame = pd.DataFrame({"a": ["x", "y"], "b": ["u", "v"], "c": ["p", "q"]})
    assert TableColumns.detect(CandidateSpace(frame, template)).separator == expected


def test_every_benchmark_method_with_a_preset_builds_the_presets_config() -> None:
    pytest.importorskip("rdkit")
    from llmbo.benchmarks.methods import METHODS
    from llmbo.datasets import load_pool

    for pool_name in ("bh1", "esol"):
        pool = load_pool(pool_name)
        for name in METHODS.names():
            method = METHODS.get(name)
            if method.preset is None or method.skip_reason(pool):
                continue
            columns = TableColumns.from_pool(pool, pool.default_template)
            want = PRESETS.get(method.preset).resolve(columns)
            assert method(pool, template=pool.default_template) == want.spec, (pool_name, name)
            got = method.acquisition_for(None, pool, pool.default_template)
            assert got.outcome_power == want.acquisition.get("acquisition.outcome_power", 1.0)


def test_detection_on_a_benchmark_pools_table_makes_the_benchmarks_choice() -> None:
    """A user who loads the bh1 or esol table gets what the benchmark ran on that pool:
    on bh1 the components GP on the name columns, which tell the reactions apart exactly
    as the pool's component SMILES columns do; on esol the LoRA deep kernel."""
    pytest.importorskip("rdkit")
    from llmbo.datasets import load_pool

    bh1 = load_pool("bh1")
    detected = resolve_surrogate(DEFAULT_PRESET, bh1.space("names"))
    declared = PRESETS.get(DEFAULT_PRESET).resolve(TableColumns.from_pool(bh1, "names"))
    assert detected.spec.name == declared.spec.name == "components"
    assert detected.acquisition == declared.acquisition
    frame = bh1.frame
    for name_col, smiles_col in zip(
        detected.spec.featurizer["columns"],
        ["ligand", "aryl halide", "additive", "base"],
        strict=True,
    ):
        pairs = frame[[name_col, smiles_col]].drop_duplicates()
        assert pairs[name_col].is_unique and pairs[smiles_col].is_unique  # one to one
    esol = load_pool("esol")
    assert resolve_surrogate(DEFAULT_PRESET, esol.space("smiles")).spec.name == "lora"


def test_the_optimizer_default_is_the_default_preset_with_its_acquisition() -> None:
    from llmbo.optimizer import Optimizer

    space = CandidateSpace(_screen(), "{ligand}, {base}, {solvent}")
    opt = Optimizer(space, progress=False)
    assert opt.preset is not None and opt.preset.preset == DEFAULT_PRESET
    assert opt.surrogate_name == "components"
    assert opt.acquisition.outcome_power == 2.0
    # A whole AcquisitionConfig is used as given.
    opt = Optimizer(space, acquisition=AcquisitionConfig(name="logei"), progress=False)
    assert opt.acquisition.outcome_power == 1.0
    # The preset runs end to end: after the first observations, suggestions come from its GP.
    values = dict(zip(space.ids, _screen()["y"], strict=True))
    opt = Optimizer(space, progress=False, seed=3)
    for _ in range(5):
        (cid,) = opt.ask(1)
        opt.tell(cid, values[cid])
    assert opt.last_fit is not None and opt.last_fit["fallback"] is None
    assert opt.best_value == max(values[c] for c in opt.history["candidate_id"])


def test_the_default_preset_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    space = CandidateSpace(_screen(), "{ligand}, {base}, {solvent}")
    with caplog.at_level("INFO", logger="llmbo.presets"):
        resolve_surrogate(DEFAULT_PRESET, space)
    assert any("every template column is categorical" in r.message for r in caplog.records)


def test_a_study_named_by_its_preset_continues_with_its_stored_settings(tmp_path) -> None:
    """Presets may choose more than they did when a study was created (the lora preset now
    adapts the output block only): reopening by the preset's name keeps what was stored."""
    from llmbo.optimizer import Optimizer
    from llmbo.surrogates.config import surrogate_config

    space = CandidateSpace(_screen(), "{ligand}, {base}, {solvent}")
    url = f"sqlite:///{tmp_path / 's.db'}"
    old = surrogate_config("lora")  # whole top layers
    Optimizer(space, old, storage=url, study_name="s", progress=False, check_model=False)
    again = Optimizer(space, "lora", storage=url, study_name="s", progress=False, check_model=False)
    assert again.spec == old and again.spec.top_module is None
    fresh = Optimizer(space, "lora", storage=url, study_name="t", progress=False, check_model=False)
    assert fresh.spec.top_module == "auto"
