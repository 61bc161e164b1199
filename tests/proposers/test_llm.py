"""``LLMProposer``: replies matched to the space, likelihood ranking for scoring backends,
random fill with a warning when the LLM gives too little, config round trip."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from llmbo.errors import InputError, StudyError
from llmbo.proposers import LLMProposer, Observations, proposer_from_config
from llmbo.proposers.llm import parse_reply
from llmbo.space import CandidateSpace
from llmbo.study import Study
from llmbo.testing.chat import ChatServer, ScriptedScorer

GRID = {
    "color": ["red", "green", "blue"],
    "animal": ["cat", "fox", "owl", "yak"],
    "place": ["forest", "city"],
}
TEMPLATE = "{color} {animal} in the {place}"


@pytest.fixture(scope="module")
def space() -> CandidateSpace:
    return CandidateSpace.from_grid(GRID, TEMPLATE)  # 24 rows


def _observed(
    space: CandidateSpace, measured: Sequence[int] = (), pending: Sequence[int] = ()
) -> Observations:
    taken = set(measured) | set(pending)
    return Observations(
        index=np.asarray(measured, dtype=np.int64),
        values=np.linspace(0.0, 1.0, len(measured)),
        pending=np.asarray(pending, dtype=np.int64),
        available=np.asarray([i for i in range(len(space)) if i not in taken], dtype=np.int64),
    )


def _row(space: CandidateSpace, text: str) -> int:
    return space.texts.index(text)


def _proposer(backend: ScriptedScorer, **settings: Any) -> LLMProposer:
    return LLMProposer(backend, **settings)


# ------------------------------------------------------------------------ chat backends
def test_exact_matches_in_reply_order(space: CandidateSpace) -> None:
    reply = (
        "```\n1. Blue  FOX in the city\n2) 'green owl in the forest'\n\n- red yak in the city\n```"
    )
    llm = ScriptedScorer([reply])
    proposal = _proposer(llm).propose(space, _observed(space, [0, 1]), 3, seed=4)
    texts = ["blue fox in the city", "green owl in the forest", "red yak in the city"]
    assert proposal.index == [_row(space, t) for t in texts]
    info = proposal.info
    assert [m["how"] for m in info["matches"]] == ["exact"] * 3
    assert [m["similarity"] for m in info["matches"]] == [1.0] * 3
    assert [m["candidate_id"] for m in info["matches"]] == [space.ids[r] for r in proposal.index]
    assert info["random_fill"] == 0 and info["rejected"] == [] and info["error"] is None
    assert info["replies"] == [reply] and info["backend"] == "scripted-scorer:script"
    assert info["mode"] == "chat"
    assert info["messages"][0]["role"] == "system" and info["messages"][1]["role"] == "user"
    json.dumps(info)  # storable as it is
    # n plus the spare lines were asked for, with the proposal's seed.
    ((_, generation),) = llm.chats
    assert generation is not None and generation.seed == 4
    assert "Propose 6 different candidates" in info["messages"][1]["content"]


def test_nearest_match_is_recorded(space: CandidateSpace) -> None:
    llm = ScriptedScorer(["red fx in the citty"])
    proposal = _proposer(llm).propose(space, _observed(space), 1, seed=0)
    assert proposal.index == [_row(space, "red fox in the city")]
    (match,) = proposal.info["matches"]
    assert match["how"] == "nearest" and match["line"] == "red fx in the citty"
    assert 0.8 <= match["similarity"] < 1.0
    assert proposal.info["random_fill"] == 0


def test_out_of_space_line_is_rejected_with_reason(
    space: CandidateSpace, caplog: pytest.LogCaptureFixture
) -> None:
    llm = ScriptedScorer(["purple unicorn on the moon\ngreen cat in the city"])
    with caplog.at_level(logging.WARNING, logger="llmbo.proposers.llm"):
        proposal = _proposer(llm).propose(space, _observed(space), 2, seed=1)
    assert proposal.index[0] == _row(space, "green cat in the city")
    (rejected,) = proposal.info["rejected"]
    assert rejected["line"] == "purple unicorn on the moon"
    assert rejected["candidate_id"] is None
    assert "not a candidate" in rejected["reason"] and "closest" in rejected["reason"]
    assert proposal.info["random_fill"] == 1
    assert len(set(proposal.index)) == 2
    assert "1 are random" in caplog.text


def test_min_similarity_decides_nearest_matches(space: CandidateSpace) -> None:
    reply = ["red fx in the citty"]
    strict = _proposer(ScriptedScorer(reply), min_similarity=0.99)
    proposal = strict.propose(space, _observed(space), 1, seed=0)
    assert proposal.info["matches"] == [] and proposal.info["random_fill"] == 1
    assert "similarity below 0.99" in proposal.info["rejected"][0]["reason"]


def test_measured_pending_and_repeated_rows_are_rejected(space: CandidateSpace) -> None:
    measured, pending = _row(space, "red cat in the forest"), _row(space, "blue owl in the city")
    reply = "\n".join(
        [
            "red cat in the forest",
            "blue owl in the city",
            "green yak in the forest",
            "Green yak in the forest.",
            "green fox in the forest",
        ]
    )
    llm = ScriptedScorer([reply])
    proposal = _proposer(llm).propose(space, _observed(space, [measured], [pending]), 2, seed=0)
    assert proposal.index == [
        _row(space, "green yak in the forest"),
        _row(space, "green fox in the forest"),
    ]
    reasons = {r["line"]: r["reason"] for r in proposal.info["rejected"]}
    assert reasons["red cat in the forest"] == "already measured"
    assert reasons["blue owl in the city"].startswith("pending")
    assert "chosen earlier" in reasons["Green yak in the forest."]
    assert {r["candidate_id"] for r in proposal.info["rejected"]} == {
        space.ids[measured],
        space.ids[pending],
        space.ids[_row(space, "green yak in the forest")],
    }
    assert proposal.info["random_fill"] == 0


@pytest.mark.parametrize("dead", [False, True])
def test_unusable_or_dead_backend_gives_random_rows(
    space: CandidateSpace, dead: bool, caplog: pytest.LogCaptureFixture
) -> None:
    observed = _observed(space, [0, 5], [7])
    llm = ScriptedScorer([""], dead=dead)
    with caplog.at_level(logging.WARNING, logger="llmbo.proposers.llm"):
        proposal = _proposer(llm).propose(space, observed, 4, seed=11)
    assert len(proposal.index) == 4 and len(set(proposal.index)) == 4
    assert set(proposal.index) <= set(observed.available.tolist())
    assert proposal.info["random_fill"] == 4
    assert caplog.records and caplog.records[0].levelno == logging.WARNING
    if dead:
        assert "scripted server is down" in proposal.info["error"]
        assert "could not answer" in caplog.text
    else:
        assert proposal.info["error"] is None and proposal.info["replies"] == [""]
    again = _proposer(ScriptedScorer([""], dead=dead)).propose(space, observed, 4, seed=11)
    assert again.index == proposal.index


def test_same_arguments_same_proposal(space: CandidateSpace) -> None:
    reply = ["blue cat in the city\nnot a candidate at all"]
    observed = _observed(space, [2, 3, 4])
    first = _proposer(ScriptedScorer(reply)).propose(space, observed, 3, seed=9)
    second = _proposer(ScriptedScorer(reply)).propose(space, observed, 3, seed=9)
    assert first.index == second.index
    assert first.info["messages"] == second.info["messages"]
    other = _proposer(ScriptedScorer(reply)).propose(space, observed, 3, seed=10)
    assert other.index[0] == first.index[0]  # the LLM's pick; the random rest may differ


# ------------------------------------------------------------------------ scoring backends
def test_scoring_backend_ranks_available_rows_by_likelihood(space: CandidateSpace) -> None:
    # fox rows score best per character, then owl; measured fox rows are never proposed.
    llm = ScriptedScorer(scoring=True, per_char={"fox": -0.1, "owl": -0.5})
    measured = [_row(space, "red fox in the forest")]
    proposer = _proposer(llm, score_batch_size=5)
    proposal = proposer.propose(space, _observed(space, measured), 6, seed=0)
    texts = [space.texts[r] for r in proposal.index]
    assert all("fox" in t for t in texts[:5]) and "owl" in texts[5]
    assert not set(measured) & set(proposal.index)
    ((replies, batch_size),) = llm.scored
    assert batch_size == 5 and len(replies) == len(space) - 1
    assert llm.chats == []  # nothing generated
    info = proposal.info
    assert info["mode"] == "score" and info["n_scored"] == len(space) - 1
    assert [m["how"] for m in info["matches"]] == ["scored"] * 6
    assert info["matches"][0]["per_char"] == pytest.approx(-0.1)
    assert "Answer with that candidate only" in info["messages"][1]["content"]
    json.dumps(info)


def test_scoring_length_normalised(space: CandidateSpace) -> None:
    """Per character, not summed: a longer text with the same rate is not penalised."""
    llm = ScriptedScorer(scoring=True, per_char={"forest": -0.2, "city": -0.2})
    proposal = _proposer(llm).propose(space, _observed(space), 24, seed=0)
    rates = [m["per_char"] for m in proposal.info["matches"]]
    assert rates == pytest.approx([-0.2] * 24)
    assert proposal.index == sorted(proposal.index)  # ties: table order


def test_scoring_respects_max_scored(space: CandidateSpace) -> None:
    llm = ScriptedScorer(scoring=True, per_char={"fox": -0.1})
    observed = _observed(space, [0, 1, 2])
    proposal = _proposer(llm, max_scored=6).propose(space, observed, 2, seed=3)
    ((replies, _),) = llm.scored
    assert len(replies) == 6 == proposal.info["n_scored"]
    scored_rows = {_row(space, t) for t in replies}
    assert scored_rows <= set(observed.available.tolist())
    assert set(proposal.index) <= scored_rows
    # Seeded: the same subsample for the same seed, another for another seed.
    again = ScriptedScorer(scoring=True, per_char={"fox": -0.1})
    _proposer(again, max_scored=6).propose(space, observed, 2, seed=3)
    assert again.scored[0][0] == replies
    other = ScriptedScorer(scoring=True, per_char={"fox": -0.1})
    for seed in range(4, 10):
        _proposer(other, max_scored=6).propose(space, observed, 2, seed=seed)
    assert any(r != replies for r, _ in other.scored)


def test_dead_scoring_backend_gives_random_rows(space: CandidateSpace) -> None:
    llm = ScriptedScorer(scoring=True, dead=True)
    proposal = _proposer(llm).propose(space, _observed(space, [1]), 3, seed=2)
    assert proposal.info["random_fill"] == 3 and "model is gone" in proposal.info["error"]
    assert 1 not in proposal.index and len(set(proposal.index)) == 3


# ------------------------------------------------------------------------ prompt
def test_prompt_describes_space_and_observations(tmp_path: Any) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "color": ["red", "blue"] * 20,
            "temp": [20 + k for k in range(40)],
            "secret": np.arange(40) * 1.5,  # a column the template does not read
        }
    )
    space = CandidateSpace.from_frame(frame, "{color} at {temp} C")
    measured = list(range(30))
    observed = Observations(
        index=np.asarray(measured),
        values=np.asarray([float(k) for k in measured]),  # row k has value k
        pending=np.asarray([30]),
        available=np.arange(31, 40),
    )
    (system, user) = LLMProposer(ScriptedScorer(), max_shown=8).messages(space, observed, 3)
    assert system.role == "system" and user.role == "user"
    text = user.content
    assert "There are 40 candidates" in text and "red at 20 C" in text
    assert "- color: 2 value(s): red, blue" in text
    assert "- temp: 40 distinct numbers from 20 to 59" in text
    assert "secret" not in text
    assert "higher values are better" in text and "8 of 30" in text
    shown = [line for line in text.splitlines() if "(value:" in line]
    values = [float(line.split("(value: ")[1].rstrip(")")) for line in shown]
    assert values == [0.0, 1.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0]  # worst first, best last
    assert "Awaiting measurement" in text and "red at 50 C" in text


def test_parse_reply_strips_markup() -> None:
    reply = (
        "Here are my picks:\n"
        "```text\n"
        "1. red cat in the forest\n"
        "  2) `blue owl in the city`\n"
        '- "green fox in the forest" (value: high)\n'
        "* **red yak in the city**\n"
        "\n"
        "3.5 mM of salt\n"
        "```"
    )
    assert parse_reply(reply) == [
        "Here are my picks:",
        "red cat in the forest",
        "blue owl in the city",
        "green fox in the forest",
        "red yak in the city",
        "3.5 mM of salt",
    ]
    assert parse_reply("") == [] and parse_reply("\n\n```\n```") == []


def test_multi_line_candidates_are_shown_and_matched_on_one_line() -> None:
    space = CandidateSpace.from_grid({"a": ["x", "y"], "b": ["p", "q"]}, "first: {a}\nsecond: {b}")
    llm = ScriptedScorer(["first: y | second: q"])
    proposal = LLMProposer(llm).propose(space, _observed(space), 1, seed=0)
    assert space.texts[proposal.index[0]] == "first: y\nsecond: q"
    assert proposal.info["matches"][0]["how"] == "exact"
    assert "first: x | second: p" in proposal.info["messages"][1]["content"]


# ------------------------------------------------------------------------ config
def test_config_round_trip_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMBO_TEST_KEY", "sk-secret-value")
    proposer = LLMProposer(
        "openai",
        {"model": "tiny", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "LLMBO_TEST_KEY"},
        max_shown=7,
        max_scored=32,
        min_similarity=0.9,
        temperature=0.0,
    )
    config = proposer.config()
    assert config["name"] == "llm" and config["backend"] == "openai"
    assert config["backend_options"]["api_key_env"] == "LLMBO_TEST_KEY"
    assert config["backend_options"]["max_retries"] == 3  # the backend's defaults filled in
    assert "sk-secret-value" not in json.dumps(config)
    rebuilt = proposer_from_config(json.loads(json.dumps(config)))
    assert isinstance(rebuilt, LLMProposer) and rebuilt.config() == config
    scripted = LLMProposer("scripted-scorer", {"replies": ["red cat in the city"]})
    assert proposer_from_config(scripted.config()).config() == scripted.config()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InputError, match="Unknown LLM backend"):
        LLMProposer("telepathy")
    with pytest.raises(InputError, match="secrets"):
        LLMProposer("openai", {"model": "m", "api_key": "sk-123"})
    with pytest.raises(InputError, match="Bad options"):
        LLMProposer("openai", {"model": "m", "colour": "red"})
    with pytest.raises(InputError, match="min_similarity"):
        LLMProposer("scripted-scorer", min_similarity=0)
    with pytest.raises(InputError, match="max_scored"):
        LLMProposer("scripted-scorer", max_scored=0)
    with pytest.raises(StudyError, match="no settings"):
        proposer_from_config({"name": "llm", "backend": "scripted-scorer", "mood": "bold"})
    with pytest.raises(StudyError, match="custom LLM backend"):
        proposer_from_config(LLMProposer(ScriptedScorer()).config())


def test_unset_key_variable_fails_when_the_backend_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLMBO_TEST_UNSET", raising=False)
    proposer = LLMProposer("openai", {"model": "m", "api_key_env": "LLMBO_TEST_UNSET"})
    with pytest.raises(InputError, match="LLMBO_TEST_UNSET"):
        proposer.backend  # noqa: B018


def test_study_with_llm_proposer(space: CandidateSpace) -> None:
    study = Study(space, LLMProposer("scripted-scorer", {"replies": ["blue yak in the forest"]}))
    assert study.ask(1) == [space.ids[_row(space, "blue yak in the forest")]]
    study.tell(study.ask(2), [1.0, 2.0])
    assert study.last_info["random_fill"] == 2  # the yak is pending now
    assert study.last_info["rejected"][0]["reason"].startswith("pending")
    assert study.record.config["proposer"]["backend"] == "scripted-scorer"


# ------------------------------------------------------------------------ real HTTP
def test_openai_backend_against_a_local_server(space: CandidateSpace) -> None:
    def script(i: int, body: dict[str, Any]) -> list[str]:
        return ["Sure:\n1. green owl in the city\n2. red cat in the forest\n3. blue yak in the cty"]

    with ChatServer(script) as server:
        proposer = LLMProposer(
            "openai",
            {"model": "tiny-chat", "base_url": server.base_url, "api_key_env": None},
            temperature=0.0,
        )
        proposal = proposer.propose(space, _observed(space, [0]), 2, seed=21)
    assert proposal.index == [
        _row(space, "green owl in the city"),
        _row(space, "blue yak in the city"),
    ]
    assert [m["how"] for m in proposal.info["matches"]] == ["exact", "nearest"]
    assert proposal.info["backend"] == "openai:tiny-chat"
    (body,) = server.bodies()
    assert body["model"] == "tiny-chat" and body["seed"] == 21 and body["temperature"] == 0.0
    assert body["messages"] == proposal.info["messages"]


def test_unreachable_server_gives_random_rows(space: CandidateSpace) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = {"model": "m", "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": None}
    proposer = LLMProposer("openai", {**options, "max_retries": 0})
    proposal = proposer.propose(space, _observed(space), 3, seed=0)
    assert proposal.info["random_fill"] == 3 and "connection failed" in proposal.info["error"]


@pytest.mark.slow
def test_packaged_local_model_ranks_available_rows(space: CandidateSpace) -> None:
    """The real scoring path: SmolLM2 (the packaged GGUF) ranks a seeded subsample."""
    pytest.importorskip("gguf", reason="gguf is not installed (pip install 'llmbo[llm]')")
    proposer = LLMProposer("local", {"model": "smollm2", "device": "cpu"}, max_scored=4)
    observed = _observed(space, [0, 5])
    proposal = proposer.propose(space, observed, 2, seed=0)
    assert proposal.info["mode"] == "score" and proposal.info["n_scored"] == 4
    assert proposal.info["random_fill"] == 0 and proposal.info["error"] is None
    assert set(proposal.index) <= set(observed.available.tolist())
    scores = [m["per_char"] for m in proposal.info["matches"]]
    assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores))
    assert proposer.propose(space, observed, 2, seed=0).index == proposal.index
