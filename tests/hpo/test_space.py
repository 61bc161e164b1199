"""``LoraSearchSpace``: the default grid, its prompts, the default row and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from llmbo.errors import InputError
from llmbo.hpo import DEFAULT_CONFIGURATION, PAPER_GRID, LoraSearchSpace
from llmbo.space import CandidateSpace


@pytest.fixture(scope="module")
def paper_space() -> CandidateSpace:
    """The default 45,360-configuration space (built once: it takes a second or two)."""
    return LoraSearchSpace().candidate_space()


def _row(space: CandidateSpace, **values: float) -> int:
    """Position of the one row of ``space`` with the given column values."""
    frame = space.frame
    mask = frame[list(values)].eq(values).all(axis=1)
    (rows,) = mask.to_numpy().nonzero()
    assert len(rows) == 1, f"expected one row with {values}, found {len(rows)}"
    return int(rows[0])


def test_default_grid_is_the_papers_45360_configurations(paper_space: CandidateSpace) -> None:
    grid = LoraSearchSpace()
    assert grid.size == 45_360 == 9 * 9 * 7 * 8 * 10
    assert grid.grid == PAPER_GRID
    assert len(paper_space) == 45_360
    assert len(paper_space.frame) == 45_360
    assert len(set(paper_space.texts)) == 45_360
    assert len(set(paper_space.ids)) == 45_360
    assert list(paper_space.frame.columns) == list(PAPER_GRID)
    # Every combination is there once.
    assert not paper_space.frame.duplicated().any()


def test_knowledge_prompt_has_one_line_per_statement(paper_space: CandidateSpace) -> None:
    row = _row(
        paper_space, r=32, alpha_ratio=4, lora_dropout=0.1, batch_size=64, learning_rate=5e-4
    )
    lines = paper_space.texts[row].split("\n")
    assert len(lines) == 5
    assert all(line.strip() for line in lines)
    rank, alpha, lr, batch, dropout = lines
    assert rank.startswith("LoRA rank r = 32")
    assert alpha.startswith("alpha = 128, alpha/r = 4")  # lora_alpha = r * alpha_ratio
    assert "multiplied by 4" in alpha
    assert lr.startswith("learning rate = 0.0005")
    assert "effective step of 0.002" in lr  # 5e-4 x 4
    assert batch.startswith("batch size = 64")
    assert dropout.startswith("dropout = 0.1")
    # Where the value sits in its searched range is stated on each line.
    assert all("in the searched range" in line for line in lines)
    assert "(very low in the searched range)" in paper_space.texts[0].split("\n")[0]


def test_every_knowledge_prompt_states_alpha_as_r_times_ratio() -> None:
    space = LoraSearchSpace(
        grid={"r": [2, 16], "alpha_ratio": [0.5, 8], "learning_rate": [1e-4]}
    ).candidate_space()
    assert len(space) == 4
    for text, (_, row) in zip(space.texts, space.frame.iterrows(), strict=True):
        lines = text.split("\n")
        assert len(lines) == 5
        alpha = row["r"] * row["alpha_ratio"]
        expected = str(int(alpha)) if float(alpha).is_integer() else f"{alpha:.3g}"
        assert lines[1].startswith(f"alpha = {expected}, "), (text, dict(row))


def test_bare_prompt_is_one_line_per_value() -> None:
    space = LoraSearchSpace(prompt="bare").candidate_space()
    assert len(space) == 45_360
    assert len(set(space.texts)) == 45_360
    default = LoraSearchSpace(prompt="bare").default_row(space)
    assert default is not None
    text = space.text(default)
    assert text == "r=8\nalpha=16\nlora_dropout=0.05\nbatch_size=16\nlearning_rate=0.0001"
    assert all(len(t.split("\n")) == 5 for t in space.texts[:1000])
    assert all(" " not in t for t in space.texts[:1000])


def test_default_row_is_the_usual_configuration(paper_space: CandidateSpace) -> None:
    cid = LoraSearchSpace().default_row(paper_space)
    assert cid is not None
    row = paper_space.rows([cid]).iloc[0]
    assert row["r"] == 8
    assert row["alpha_ratio"] == 2
    assert row["lora_dropout"] == pytest.approx(0.05)
    assert row["batch_size"] == 16
    assert row["learning_rate"] == pytest.approx(1e-4)
    assert {k: float(row[k]) for k in DEFAULT_CONFIGURATION} == pytest.approx(DEFAULT_CONFIGURATION)


def test_default_row_is_none_when_the_grid_lacks_it() -> None:
    grid = LoraSearchSpace(grid={"r": [2, 4], "learning_rate": [1e-3, 1e-2]})
    assert grid.default_row(grid.candidate_space()) is None
    # A fixed setting other than the default rules it out too.
    fixed = LoraSearchSpace(grid={"r": [8, 16]}, fixed={"learning_rate": 1e-3})
    assert fixed.default_row(fixed.candidate_space()) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid": {"rank": [1, 2]}}, "Unknown hyperparameter 'rank'"),
        ({"grid": {"r": [2], "learnig_rate": [1e-4]}}, "Unknown hyperparameter 'learnig_rate'"),
        ({"grid": {"r": []}}, "'r' has an empty list of values"),
        ({"grid": {"r": "8"}}, "needs a list of values"),
        ({"grid": {"r": ["a", "b"]}}, "r values must be positive numbers, got 'a'"),
        ({"grid": {"learning_rate": ["1e-4"]}}, "learning_rate values must be positive numbers"),
        ({"grid": {"batch_size": [True]}}, "batch_size values must be positive numbers"),
        ({"grid": {"r": [2.5]}}, "r values must be whole numbers"),
        ({"grid": {"lora_alpha": [16, 32]}}, "lora_alpha is derived as r * alpha_ratio"),
        ({"grid": {"r": [8]}, "fixed": {"lora_alpha": 16}}, "lora_alpha is derived"),
        ({"grid": {"r": [4, 8]}, "fixed": {"r": 8}}, "['r'] are both searched (grid) and fixed"),
        ({"grid": {"learning_rate": [1e-4, -1e-3]}}, "learning_rate values must be positive"),
        ({"grid": {"learning_rate": [float("inf")]}}, "learning_rate values must be positive"),
        ({"grid": {"lora_dropout": [0.1, 1.5]}}, "lora_dropout values must be numbers in [0, 1)"),
        ({"grid": {}}, "at least one hyperparameter"),
        ({"prompt": "fancy"}, "prompt must be one of"),
    ],
)
def test_bad_grids_are_refused_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        LoraSearchSpace(**kwargs)
    assert message in str(info.value)


def test_a_fixed_negative_learning_rate_is_refused() -> None:
    with pytest.raises(InputError, match="learning_rate"):
        LoraSearchSpace(grid={"r": [4, 8]}, fixed={"learning_rate": -1e-4})


def test_numpy_numbers_are_numbers() -> None:
    grid = LoraSearchSpace(grid={"r": list(np.array([2, 4])), "batch_size": [np.int32(8)]})
    assert grid.size == 2


def test_other_peft_fields_are_searched_and_shown_in_the_prompt() -> None:
    grid = LoraSearchSpace(grid={**PAPER_GRID, "use_rslora": [True, False]})
    assert grid.size == 2 * 45_360
    small = LoraSearchSpace(
        grid={"r": [4, 16], "alpha_ratio": [2], "use_rslora": [True, False]},
        fixed={"target_modules": ["query", "value"]},
    )
    space = small.candidate_space()
    assert len(space) == 4
    assert "use_rslora" in space.frame.columns
    rs = space.texts[_row(space, r=16, use_rslora=True)].split("\n")
    plain = space.texts[_row(space, r=16, use_rslora=False)].split("\n")
    assert len(rs) == len(plain) == 6
    assert rs[-1] == "use_rslora = True."
    assert plain[-1] == "use_rslora = False."
    # rsLoRA scales the update by alpha / sqrt(r): 2 * sqrt(16) = 8 instead of 2.
    assert "multiplied by 8" in rs[1]
    assert "multiplied by 2" in plain[1]
    bare = LoraSearchSpace(grid=small.grid, fixed=small.fixed, prompt="bare").candidate_space()
    assert any(t.endswith("use_rslora=True") for t in bare.texts)
    assert all(len(t.split("\n")) == 3 for t in bare.texts)  # r, alpha, use_rslora


def test_round_trip_through_a_dict() -> None:
    grid = LoraSearchSpace(grid={"r": [2, 4]}, fixed={"learning_rate": 1e-3}, prompt="bare")
    again = LoraSearchSpace.from_dict(grid.to_dict())
    assert again == grid
    assert again.candidate_space().texts == grid.candidate_space().texts
