"""Fixtures of the reliability suite: study backends and a tiny model that reads words.

A module, not ``conftest.py``: a second ``conftest`` module would shadow the ``from conftest
import ...`` of the tests one folder up. Test modules import the fixtures they use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: A scratch PostgreSQL database (e.g. postgresql+psycopg://llmbo:llmbo@127.0.0.1/llmbo_test);
#: `.ci/run` starts one from Debian's packages and exports it.
POSTGRES_URL = os.environ.get("LLMBO_TEST_POSTGRES_URL")


@pytest.fixture(name="study_url", params=["sqlite", "postgresql"])
def study_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A study storage URL: a fresh SQLite file, or the scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("set LLMBO_TEST_POSTGRES_URL to run this test on PostgreSQL too")
    yield POSTGRES_URL


@pytest.fixture(name="study_name")
def study_name_fixture() -> str:
    return f"rel-{uuid.uuid4().hex[:12]}"


@pytest.fixture(name="word_model", scope="session")
def word_model_fixture(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random BERT with a tokenizer that knows its word list.

    Some transformers versions ignore ``vocab_file`` in ``BertTokenizerFast(...)``, which
    leaves ``tiny_model`` mapping every word to ``[UNK]`` (all candidates then have the same
    embedding). Rebuilding the tokenizer with ``from_pretrained`` on the vocabulary file
    works on every version; this copy is used where distinct embeddings matter.
    """
    import shutil

    from transformers import BertTokenizerFast

    target = tmp_path_factory.mktemp("word-bert")
    for item in Path(tiny_model).iterdir():
        if item.name.startswith("tokenizer") or item.name == "special_tokens_map.json":
            continue
        shutil.copy(item, target / item.name)
    vocab_only = tmp_path_factory.mktemp("word-bert-vocab")
    shutil.copy(Path(tiny_model) / "vocab.txt", vocab_only / "vocab.txt")
    tokenizer = BertTokenizerFast.from_pretrained(vocab_only, do_lower_case=True)
    tokenizer.save_pretrained(target)
    return str(target)
