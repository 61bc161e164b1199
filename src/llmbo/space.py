"""Candidate spaces: a finite table of candidates, each rendered to text by a template.

A :class:`CandidateSpace` is the first stage of the data flow: it turns a table (or an
enumerated grid of parameters) into stable candidate ids and the texts an encoder reads.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import string
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmbo.errors import DuplicateCandidatesError, SpaceError, UnknownCandidateError

Template = str | Callable[[Mapping[str, Any]], str]

__all__ = ["CandidateSpace", "template_fields"]


def template_fields(template: str) -> list[str]:
    """Return the column names a ``str.format``-style template refers to, in order.

    >>> template_fields("{ligand} in {solvent} at {temp:.0f} C")
    ['ligand', 'solvent', 'temp']
    """
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SpaceError(f"Template {template!r} is not a valid format string: {exc}") from exc
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise SpaceError(
                f"Template {template!r} has a positional placeholder '{{{field}}}'; "
                "name a column instead, e.g. '{ligand}'."
            )
        # The whole placeholder names a column: no attribute or index access
        # ('{col.__class__}', '{col[0]}'), so a template can only read the table's values.
        if field not in fields:
            fields.append(field)
    return fields


class _ColumnFormatter(string.Formatter):
    """``str.format`` whose placeholders are whole column names, never attribute or index
    lookups (``'{temp.C}'`` reads a column called ``temp.C``)."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        try:
            return kwargs[field_name], field_name
        except KeyError:
            raise SpaceError(
                f"Template placeholder {{{field_name}}} is not a column of the table; a "
                "placeholder is a column name only (no attribute or index access)."
            ) from None


_FORMATTER = _ColumnFormatter()


def _stable_id(text: str) -> str:
    return "c" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


class CandidateSpace:
    """A finite set of candidates with stable ids and a text rendering of each.

    Args:
        frame: One row per candidate. Columns hold the candidate's properties.
        template: A ``str.format`` template whose placeholders name columns
            (``"{ligand} with {base} at {temp:.0f} C"``), or a callable mapping a row
            (a dict of column values) to text.
        id_column: Column holding unique candidate ids. When omitted, ids are derived
            from the rendered text, so they stay the same if the table is reordered.
        on_duplicate: What to do when two rows render to the same text: ``"error"``
            (default) raises :class:`DuplicateCandidatesError`; ``"drop"`` keeps the first.
        name: Optional label recorded in studies and reports.

    The rows keep their order; ``space.ids[i]`` and ``space.texts[i]`` describe row ``i``.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        template: Template,
        *,
        id_column: str | None = None,
        on_duplicate: Literal["error", "drop"] = "error",
        name: str | None = None,
    ) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise SpaceError(f"Expected a pandas DataFrame, got {type(frame).__name__}.")
        if len(frame) == 0:
            raise SpaceError("The candidate table is empty: a space needs at least one row.")
        if on_duplicate not in ("error", "drop"):
            raise SpaceError(f"on_duplicate must be 'error' or 'drop', got {on_duplicate!r}.")
        frame = frame.reset_index(drop=True)
        self.template = template
        self.id_column = id_column
        self.name = name
        texts = self._render(frame, template)
        if id_column is not None:
            if id_column not in frame.columns:
                raise SpaceError(
                    f"id_column {id_column!r} is not a column of the table; "
                    f"available columns: {list(map(str, frame.columns))}."
                )
            if frame[id_column].isna().any():
                raise SpaceError(
                    f"id_column {id_column!r} has missing values; every row needs an id."
                )
            ids = [str(v) for v in frame[id_column]]
        else:
            ids = [_stable_id(t) for t in texts]

        text_dup = pd.Series(texts).duplicated(keep="first").to_numpy()
        id_dup = pd.Series(ids).duplicated(keep="first").to_numpy()
        dup = text_dup | id_dup
        if dup.any():
            if on_duplicate == "error":
                rows = np.flatnonzero(dup)[:5].tolist()
                what = "text" if text_dup.any() else "id"
                example = texts[rows[0]] if what == "text" else ids[rows[0]]
                raise DuplicateCandidatesError(
                    f"{int(dup.sum())} candidate(s) repeat an earlier candidate's {what} "
                    f"(rows {rows}{'...' if dup.sum() > 5 else ''}, e.g. {example[:80]!r}). "
                    "Remove the duplicate rows, add a column that tells them apart to the "
                    "template, or pass on_duplicate='drop' to keep the first of each."
                )
            keep = ~dup
            frame = frame.loc[keep].reset_index(drop=True)
            texts = [t for t, k in zip(texts, keep, strict=True) if k]
            ids = [i for i, k in zip(ids, keep, strict=True) if k]

        self.frame: pd.DataFrame = frame
        self.texts: list[str] = texts
        self.ids: list[str] = ids
        self._position = {cid: i for i, cid in enumerate(ids)}
        self._hash: str | None = None

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_frame(cls, frame: pd.DataFrame, template: Template, **kwargs: Any) -> CandidateSpace:
        """Build a space from a DataFrame (same arguments as the constructor)."""
        return cls(frame, template, **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, template: Template, **kwargs: Any) -> CandidateSpace:
        """Build a space from a CSV, TSV or Parquet file."""
        return cls(read_table(path), template, name=kwargs.pop("name", Path(path).stem), **kwargs)

    @classmethod
    def from_grid(
        cls,
        parameters: Mapping[str, Sequence[Any]],
        template: Template,
        *,
        constraint: Callable[[Mapping[str, Any]], bool] | None = None,
        **kwargs: Any,
    ) -> CandidateSpace:
        """Enumerate the Cartesian product of parameter values (optionally filtered).

        Args:
            parameters: Parameter name -> the values it may take.
            template: Text template over the parameter names.
            constraint: Optional predicate; combinations for which it returns False are skipped.
        """
        if not parameters:
            raise SpaceError("from_grid needs at least one parameter with values.")
        for key, values in parameters.items():
            if len(values) == 0:
                raise SpaceError(f"Parameter {key!r} has no values; give it at least one.")
        names = list(parameters)
        rows = (
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*parameters.values())
        )
        if constraint is not None:
            rows = (r for r in rows if constraint(r))
        frame = pd.DataFrame(list(rows), columns=names)
        if len(frame) == 0:
            raise SpaceError("The constraint rejected every combination: the grid is empty.")
        return cls(frame, template, **kwargs)

    # -------------------------------------------------------------------- rendering
    @staticmethod
    def _render(frame: pd.DataFrame, template: Template) -> list[str]:
        if callable(template):
            texts = [str(template(row)) for row in frame.to_dict(orient="records")]
        elif isinstance(template, str):
            fields = template_fields(template)
            missing = [f for f in fields if f not in frame.columns]
            if missing:
                raise SpaceError(
                    f"Template placeholder(s) {missing} are not columns of the table; "
                    f"available columns: {list(map(str, frame.columns))}."
                )
            for f in fields:
                if frame[f].isna().any():
                    bad = frame.index[frame[f].isna()][:5].tolist()
                    raise SpaceError(
                        f"Column {f!r} used by the template has missing values (rows {bad}); "
                        "fill or drop those rows first."
                    )
            try:
                records = frame[fields].to_dict(orient="records") if fields else [{}] * len(frame)
                texts = [_FORMATTER.vformat(template, (), row) for row in records]
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise SpaceError(
                    f"Could not render template {template!r}: {exc}. Check that numeric format "
                    "specs (e.g. '{temp:.1f}') are only used on numeric columns."
                ) from exc
        else:
            raise SpaceError(
                f"template must be a string or a callable, got {type(template).__name__}."
            )
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise SpaceError(f"Template renders empty text for rows {empty[:5]}.")
        return texts

    # ---------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, candidate_id: object) -> bool:
        return candidate_id in self._position

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"CandidateSpace({label}{len(self)} candidates)"

    def index_of(self, ids: str | Sequence[str]) -> np.ndarray:
        """Row positions of the given candidate ids (raises for unknown ids)."""
        if isinstance(ids, str):
            ids = [ids]
        out = np.empty(len(ids), dtype=np.int64)
        for k, cid in enumerate(ids):
            pos = self._position.get(str(cid))
            if pos is None:
                raise UnknownCandidateError(
                    f"Candidate id {cid!r} is not in this space of {len(self)} candidates; "
                    "use ids from space.ids or from ask()."
                )
            out[k] = pos
        return out

    def text(self, candidate_id: str) -> str:
        """The rendered text of one candidate."""
        return self.texts[int(self.index_of(candidate_id)[0])]

    # Names of the columns llmbo adds to the table's own in :meth:`rows` and in results:
    # ``candidate_id``, ``text`` and ``value``, each followed by as many ``_`` as it takes
    # not to collide with a column of the table (any column name a table has works).
    def _free_name(self, wanted: str, taken: Sequence[str] = ()) -> str:
        used = {str(c) for c in self.frame.columns} | set(taken)
        name = wanted
        while name in used:
            name += "_"
        return name

    @property
    def id_label(self) -> str:
        """Name of the candidate-id index of :meth:`rows` (``"candidate_id"`` unless the
        table has a column of that name)."""
        return self._free_name("candidate_id")

    @property
    def text_column(self) -> str:
        """Name of the rendered-text column of :meth:`rows` (``"text"`` unless taken)."""
        return self._free_name("text", [self.id_label])

    @property
    def value_column(self) -> str:
        """Name of the measured-value column in results (``"value"`` unless taken)."""
        return self._free_name("value", [self.id_label, self.text_column])

    def rows(self, ids: Sequence[str]) -> pd.DataFrame:
        """The table rows of the given candidates, indexed by candidate id (index name
        :attr:`id_label`), with their text first (column :attr:`text_column`)."""
        pos = self.index_of(ids)
        out = self.frame.iloc[pos].copy()
        out.insert(0, self.text_column, [self.texts[p] for p in pos])
        out.index = pd.Index([self.ids[p] for p in pos], name=self.id_label)
        return out

    def content_hash(self) -> str:
        """A digest of ids and texts, used to check a reopened study has the same space."""
        if self._hash is not None:
            return self._hash
        h = hashlib.sha1()
        for cid, text in zip(self.ids, self.texts, strict=True):
            h.update(cid.encode())
            h.update(b"\0")
            h.update(text.encode())
            h.update(b"\1")
        self._hash = h.hexdigest()
        return self._hash

    # -------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (only for string templates)."""
        if not isinstance(self.template, str):
            raise SpaceError("Only spaces with a string template can be saved into a study.")
        return {
            "name": self.name,
            "template": self.template,
            "id_column": self.id_column,
            "records": self.frame.to_json(orient="split", index=False, double_precision=15),
            "content_hash": self.content_hash(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CandidateSpace:
        """Inverse of :meth:`to_dict`."""
        from io import StringIO

        frame = pd.read_json(StringIO(data["records"]), orient="split", dtype=False)
        space = cls(frame, data["template"], id_column=data.get("id_column"), name=data.get("name"))
        if data.get("content_hash") and space.content_hash() != data["content_hash"]:
            raise SpaceError(
                "The stored space does not reproduce its own content hash; the study is damaged."
            )
        return space


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file with messages that say what went wrong."""
    p = Path(path)
    try:
        exists = p.exists()
    except OSError as exc:  # e.g. a file name too long
        raise SpaceError(f"Table file {str(p)[:80]!r}...: {exc.strerror or exc}.") from None
    if not exists:
        raise SpaceError(f"Table file {str(p)!r} does not exist.")
    if p.is_dir():
        raise SpaceError(f"{str(p)!r} is a directory; give the path of a CSV or Parquet file.")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            from llmbo._imports import require

            require("pyarrow", "Reading Parquet files")
            frame = pd.read_parquet(p)
        elif suffix in (".tsv", ".tab"):
            frame = pd.read_csv(p, sep="\t")
        else:
            frame = pd.read_csv(p)
    except pd.errors.EmptyDataError as exc:
        raise SpaceError(
            f"Table file {str(p)!r} is empty: it needs a header row and data rows."
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise SpaceError(f"Could not read table {str(p)!r}: {exc}") from exc
    if len(frame) == 0:
        raise SpaceError(f"Table file {str(p)!r} has a header but no rows.")
    return frame


def finite_values(values: Sequence[Any], what: str = "value") -> np.ndarray:
    """Convert measured values to float64, rejecting NaN, inf and non-numbers."""
    from llmbo.errors import ObjectiveValueError

    out = np.empty(len(values), dtype=np.float64)
    for k, v in enumerate(values):
        if isinstance(v, bool):
            raise ObjectiveValueError(f"{what} #{k} is a boolean ({v!r}); give a number.")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ObjectiveValueError(f"{what} #{k} is not a number: {v!r}.") from None
        if not math.isfinite(f):
            raise ObjectiveValueError(
                f"{what} #{k} is {f!r}; measured values must be finite numbers. "
                "Report failed experiments with a finite value (e.g. 0 yield) or mark the trial failed."
            )
        out[k] = f
    return out
