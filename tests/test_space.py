"""Candidate spaces: rendering, validation, stable ids, files and serialisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmbo.errors import (
    DuplicateCandidatesError,
    InputError,
    ObjectiveValueError,
    SpaceError,
    UnknownCandidateError,
)
from llmbo.space import CandidateSpace, finite_values, template_fields


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ligand": ["XPhos", "SPhos", "XPhos", "BrettPhos"],
            "solvent": ["THF", "THF", "DMF", "toluene"],
            "temp": [80.0, 60.25, 100.0, 25.5],
            "yield": [0.1, 0.5, 0.3, 0.9],
        }
    )


TEMPLATE = "{ligand} in {solvent} at {temp:.1f} C"


# ------------------------------------------------------------------------- templates
def test_template_fields_in_order_without_repeats() -> None:
    # A placeholder is a whole column name: "{c.real}" reads a column called "c.real".
    assert template_fields("{b} and {a:>5} and {b!r} and {c.real}") == ["b", "a", "c.real"]
    assert template_fields("no placeholders") == []


def test_template_renders_rows_with_format_specs(frame: pd.DataFrame) -> None:
    space = CandidateSpace(frame, TEMPLATE)
    assert space.texts == [
        "XPhos in THF at 80.0 C",
        "SPhos in THF at 60.2 C",  # Python's round-half-even on 60.25
        "XPhos in DMF at 100.0 C",
        "BrettPhos in toluene at 25.5 C",
    ]
    assert len(space) == 4
    # Row i of the table is candidate i; text() and rows() agree with it.
    assert space.text(space.ids[3]) == "BrettPhos in toluene at 25.5 C"
    rows = space.rows([space.ids[2], space.ids[0]])
    assert list(rows.index) == [space.ids[2], space.ids[0]]
    assert rows.index.name == "candidate_id"
    assert list(rows["text"]) == [space.texts[2], space.texts[0]]
    assert list(rows["yield"]) == [0.3, 0.1]
    assert space.ids[1] in space and "nope" not in space


def test_integer_format_spec_and_literal_braces() -> None:
    df = pd.DataFrame({"n": [1, 22], "x": [0.5, 0.25]})
    space = CandidateSpace(df, "{{n}}={n:03d}, x={x:.0%}")
    assert space.texts == ["{n}=001, x=50%", "{n}=022, x=25%"]


def test_numeric_spec_on_text_column_is_a_clear_error(frame: pd.DataFrame) -> None:
    with pytest.raises(SpaceError, match=r"numeric format\s+specs"):
        CandidateSpace(frame, "{ligand:.1f}")


def test_positional_placeholder_is_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(SpaceError, match="positional placeholder"):
        CandidateSpace(frame, "{} in {solvent}")


def test_malformed_template_is_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(SpaceError, match="not a valid format string"):
        CandidateSpace(frame, "{ligand in {solvent}")


def test_placeholder_not_in_table_names_it_and_the_columns(frame: pd.DataFrame) -> None:
    with pytest.raises(SpaceError) as info:
        CandidateSpace(frame, "{ligand} with {base}")
    message = str(info.value)
    assert "['base']" in message
    for column in ("ligand", "solvent", "temp", "yield"):
        assert column in message


def test_missing_id_column_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(SpaceError, match=r"id_column 'code' is not a column"):
        CandidateSpace(frame, TEMPLATE, id_column="code")


def test_missing_values_in_id_column(frame: pd.DataFrame) -> None:
    frame["code"] = ["a", None, "c", "d"]
    with pytest.raises(SpaceError, match="missing values"):
        CandidateSpace(frame, TEMPLATE, id_column="code")


def test_nan_in_template_column_names_column_and_row(frame: pd.DataFrame) -> None:
    frame.loc[2, "temp"] = np.nan
    with pytest.raises(SpaceError) as info:
        CandidateSpace(frame, TEMPLATE)
    assert "'temp'" in str(info.value)
    assert "[2]" in str(info.value)


def test_nan_in_unused_column_is_fine(frame: pd.DataFrame) -> None:
    frame.loc[1, "yield"] = np.nan
    assert len(CandidateSpace(frame, TEMPLATE)) == 4


def test_empty_table_is_rejected() -> None:
    with pytest.raises(SpaceError, match="empty"):
        CandidateSpace(pd.DataFrame({"a": []}), "{a}")


def test_not_a_dataframe_is_rejected() -> None:
    with pytest.raises(SpaceError, match="DataFrame"):
        CandidateSpace([{"a": 1}], "{a}")  # type: ignore[arg-type]


def test_template_rendering_empty_text_is_rejected() -> None:
    with pytest.raises(SpaceError, match="empty text"):
        CandidateSpace(pd.DataFrame({"a": ["x", " "]}), "{a}")


def test_template_of_wrong_type_is_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(SpaceError, match="string or a callable"):
        CandidateSpace(frame, 42)  # type: ignore[arg-type]


def test_callable_template_gets_each_row_as_a_mapping(frame: pd.DataFrame) -> None:
    seen: list[dict] = []

    def render(row: dict) -> str:
        seen.append(dict(row))
        return f"{row['ligand'].lower()}/{row['solvent']}/{int(row['temp'])}"

    space = CandidateSpace(frame, render)
    assert space.texts == ["xphos/THF/80", "sphos/THF/60", "xphos/DMF/100", "brettphos/toluene/25"]
    assert seen[1] == {"ligand": "SPhos", "solvent": "THF", "temp": 60.25, "yield": 0.5}
    with pytest.raises(SpaceError, match="string template"):
        space.to_dict()


# ------------------------------------------------------------------------ duplicates
def test_duplicate_texts_raise_with_advice() -> None:
    df = pd.DataFrame({"a": ["x", "y", "x", "z", "y"], "b": [1, 2, 3, 4, 5]})
    with pytest.raises(DuplicateCandidatesError) as info:
        CandidateSpace(df, "{a}")
    message = str(info.value)
    assert message.startswith("2 candidate(s)")
    assert "rows [2, 4]" in message
    assert "on_duplicate='drop'" in message
    assert isinstance(info.value, SpaceError) and isinstance(info.value, InputError)


def test_duplicates_dropped_keep_first_occurrence() -> None:
    df = pd.DataFrame({"a": ["x", "y", "x", "z", "y"], "b": [1, 2, 3, 4, 5]})
    space = CandidateSpace(df, "{a}", on_duplicate="drop")
    assert space.texts == ["x", "y", "z"]
    assert list(space.frame["b"]) == [1, 2, 4]
    assert list(space.frame.index) == [0, 1, 2]
    assert len(set(space.ids)) == 3


def test_duplicate_ids_in_id_column_are_detected() -> None:
    df = pd.DataFrame({"code": ["r1", "r2", "r1"], "a": ["x", "y", "z"]})
    with pytest.raises(DuplicateCandidatesError, match="id"):
        CandidateSpace(df, "{a}", id_column="code")
    space = CandidateSpace(df, "{a}", id_column="code", on_duplicate="drop")
    assert space.ids == ["r1", "r2"]
    assert space.texts == ["x", "y"]


def test_bad_on_duplicate_option(frame: pd.DataFrame) -> None:
    with pytest.raises(SpaceError, match="on_duplicate"):
        CandidateSpace(frame, TEMPLATE, on_duplicate="ignore")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- ids
def test_ids_are_stable_under_row_reordering(frame: pd.DataFrame) -> None:
    a = CandidateSpace(frame, TEMPLATE)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert list(shuffled["temp"]) != list(frame["temp"])
    b = CandidateSpace(shuffled, TEMPLATE)
    assert dict(zip(a.ids, a.texts, strict=True)) == dict(zip(b.ids, b.texts, strict=True))
    assert a.ids != b.ids  # same ids, other order
    # An id means the same candidate in both spaces.
    for cid in a.ids:
        assert a.rows([cid])["yield"].item() == b.rows([cid])["yield"].item()


def test_ids_are_deterministic_across_constructions(frame: pd.DataFrame) -> None:
    ids = CandidateSpace(frame, TEMPLATE).ids
    assert ids == CandidateSpace(frame.copy(), TEMPLATE).ids
    assert all(isinstance(i, str) and i for i in ids)
    # Another template is another candidate text, hence another id.
    assert set(ids).isdisjoint(CandidateSpace(frame, "{ligand}/{solvent}/{temp}").ids)


def test_id_column_gives_ids_as_strings(frame: pd.DataFrame) -> None:
    frame["code"] = [10, 11, 12, 13]
    space = CandidateSpace(frame, TEMPLATE, id_column="code")
    assert space.ids == ["10", "11", "12", "13"]
    assert space.index_of(["12", "10"]).tolist() == [2, 0]


def test_unknown_id_is_a_clear_error(frame: pd.DataFrame) -> None:
    space = CandidateSpace(frame, TEMPLATE)
    with pytest.raises(UnknownCandidateError) as info:
        space.index_of([space.ids[0], "c-not-there"])
    assert "'c-not-there'" in str(info.value)
    assert "4 candidates" in str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, InputError)
    with pytest.raises(UnknownCandidateError):
        space.text("c-not-there")
    with pytest.raises(UnknownCandidateError):
        space.rows(["c-not-there"])


def test_content_hash_depends_on_ids_and_texts(frame: pd.DataFrame) -> None:
    a = CandidateSpace(frame, TEMPLATE)
    assert a.content_hash() == CandidateSpace(frame.copy(), TEMPLATE).content_hash()
    assert a.content_hash() != CandidateSpace(frame, "{ligand} {solvent} {temp}").content_hash()
    assert a.content_hash() != CandidateSpace(frame.iloc[::-1], TEMPLATE).content_hash()


# ----------------------------------------------------------------------------- grid
def test_from_grid_enumerates_the_product_in_order() -> None:
    space = CandidateSpace.from_grid(
        {"lr": [0.1, 0.01], "depth": [2, 4, 8]}, "lr={lr:g} depth={depth}"
    )
    assert space.texts == [
        "lr=0.1 depth=2",
        "lr=0.1 depth=4",
        "lr=0.1 depth=8",
        "lr=0.01 depth=2",
        "lr=0.01 depth=4",
        "lr=0.01 depth=8",
    ]
    assert list(space.frame.columns) == ["lr", "depth"]


def test_from_grid_constraint_filters_combinations() -> None:
    space = CandidateSpace.from_grid(
        {"a": [1, 2, 3], "b": [1, 2, 3]},
        "{a}-{b}",
        constraint=lambda row: row["a"] < row["b"],
    )
    assert space.texts == ["1-2", "1-3", "2-3"]


def test_from_grid_errors() -> None:
    with pytest.raises(SpaceError, match="at least one parameter"):
        CandidateSpace.from_grid({}, "{a}")
    with pytest.raises(SpaceError, match="'b' has no values"):
        CandidateSpace.from_grid({"a": [1], "b": []}, "{a}{b}")
    with pytest.raises(SpaceError, match="rejected every combination"):
        CandidateSpace.from_grid({"a": [1, 2]}, "{a}", constraint=lambda row: False)


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_from_file_matches_from_frame(frame: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"reactions{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    else:
        pytest.importorskip("pyarrow")
        frame.to_parquet(path, index=False)
    space = CandidateSpace.from_file(path, TEMPLATE)
    reference = CandidateSpace(frame, TEMPLATE)
    assert space.ids == reference.ids
    assert space.texts == reference.texts
    assert space.name == "reactions"
    pd.testing.assert_frame_equal(space.frame, reference.frame)


def test_from_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="does not exist"):
        CandidateSpace.from_file(tmp_path / "missing.csv", "{a}")
    with pytest.raises(SpaceError, match="directory"):
        CandidateSpace.from_file(tmp_path, "{a}")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(SpaceError, match="empty"):
        CandidateSpace.from_file(empty, "{a}")
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(SpaceError, match="no rows"):
        CandidateSpace.from_file(header_only, "{a}")


# --------------------------------------------------------------------- serialisation
def test_to_dict_from_dict_round_trip_through_json(frame: pd.DataFrame) -> None:
    frame["temp"] = [80.0, 60.123456789012, 100.0, 1e-7]
    space = CandidateSpace(frame, "{ligand} in {solvent} at {temp:.9f} C", name="demo")
    payload = json.loads(json.dumps(space.to_dict()))
    again = CandidateSpace.from_dict(payload)
    assert again.ids == space.ids
    assert again.texts == space.texts
    assert again.name == "demo"
    assert again.content_hash() == space.content_hash()
    pd.testing.assert_frame_equal(again.frame, space.frame)


def test_from_dict_detects_a_damaged_payload(frame: pd.DataFrame) -> None:
    payload = CandidateSpace(frame, TEMPLATE).to_dict()
    payload["template"] = "{ligand} in {solvent}"
    with pytest.raises(SpaceError, match="content hash"):
        CandidateSpace.from_dict(payload)


# -------------------------------------------------------------------- measured values
def test_finite_values_accepts_numbers_and_numeric_strings() -> None:
    out = finite_values([1, 2.5, np.float32(0.25), "3"])
    assert out.dtype == np.float64
    assert out.tolist() == [1.0, 2.5, 0.25, 3.0]


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (-np.inf, "inf"),
        ("abc", "not a number"),
        (None, "not a number"),
        (True, "boolean"),
    ],
)
def test_finite_values_rejects_bad_values(value: object, pattern: str) -> None:
    with pytest.raises(ObjectiveValueError, match=pattern) as info:
        finite_values([1.0, value], "yield")
    assert "yield #1" in str(info.value)


# ------------------------------------------------------------------ issue 20: templates
@pytest.mark.parametrize("template", ["{a.__class__}", "{a[0]}", "{a.__class__.__mro__}"])
def test_templates_read_columns_only(template: str) -> None:
    frame = pd.DataFrame({"a": ["x", "y"]})
    with pytest.raises(SpaceError, match="not columns of the table"):
        CandidateSpace(frame, template)


def test_placeholders_name_whole_columns() -> None:
    frame = pd.DataFrame({"temp.C": [20, 30], "a[0]": ["p", "q"]})
    space = CandidateSpace(frame, "{a[0]} at {temp.C:.1f} C")
    assert space.texts == ["p at 20.0 C", "q at 30.0 C"]


def test_llmbo_columns_step_aside_for_table_columns() -> None:
    frame = pd.DataFrame(
        {"candidate_id": ["u", "v"], "text": ["t1", "t2"], "value": [1.0, 2.0], "k": [1, 2]}
    )
    space = CandidateSpace(frame, "{text} {k}")
    assert (space.id_label, space.text_column, space.value_column) == (
        "candidate_id_",
        "text_",
        "value_",
    )
    rows = space.rows(space.ids)
    assert rows.index.name == "candidate_id_"
    assert rows["text_"].tolist() == ["t1 1", "t2 2"]
    assert rows["text"].tolist() == ["t1", "t2"]  # the table's own column, unchanged
    assert list(rows.reset_index().columns[:2]) == ["candidate_id_", "text_"]
    plain = CandidateSpace(pd.DataFrame({"k": [1, 2]}), "{k}")
    assert (plain.id_label, plain.text_column, plain.value_column) == (
        "candidate_id",
        "text",
        "value",
    )
