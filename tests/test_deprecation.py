"""The deprecation helper follows the written rule."""

from __future__ import annotations

import warnings

import pytest

from llmbo._deprecation import deprecated, warn_deprecated


def test_a_deprecated_function_still_works_and_warns_with_the_replacement() -> None:
    @deprecated(since="0.2", removed_in="0.3", instead="new_add")
    def old_add(a: int, b: int) -> int:
        """Add."""
        return a + b

    with pytest.warns(FutureWarning, match=r"old_add is deprecated since llmbo 0.2 and will be "
                      r"removed in 0.3; use new_add instead"):  # fmt: skip
        assert old_add(1, 2) == 3
    assert old_add.__doc__.startswith("Deprecated since 0.2, removed in 0.3: use new_add.")


def test_the_warning_points_at_the_callers_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_deprecated(
            "--old-flag", since="0.2", removed_in="0.3", instead="--new-flag", stacklevel=2
        )
    assert caught[0].filename == __file__


@pytest.mark.parametrize(("since", "removed"), [("0.2", "0.4"), ("0.2", "0.2"), ("1.3", "2.1")])
def test_a_removal_other_than_one_minor_version_later_is_refused(since: str, removed: str) -> None:
    with pytest.raises(ValueError, match="Deprecations last one minor version"):
        warn_deprecated("x", since=since, removed_in=removed, instead="y")
