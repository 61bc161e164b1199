"""The catalyst loop on a tiny word-rating task: stages, restarts, the kept state, a dead
mentor, resumption."""

from __future__ import annotations

import logging

import pytest
import torch

from llmbo.catalyst import Catalyst, CatalystConfig, SoftPromptModel
from llmbo.errors import InputError, StudySettingsError
from llmbo.testing.llm import ScriptedBackend

REPLY = '1. rate the mood of this word\n2) "score the feeling"\n- tone'


def _config(**kwargs):
    base = dict(epochs=4, mentor_epochs=(0, 2), batch_size=4, learning_rate=0.05, seed=3)
    return CatalystConfig(**{**base, **kwargs})


def _metrics(record):
    """Every validation metric a run recorded (start, epoch ends, restarts)."""
    values = [e["validation_metric"] for e in record.events("start")]
    values += [e["validation_metric"] for e in record.events("epoch")]
    values += [e["validation_metric"] for e in record.events("restart")]
    return values


def test_restarts_happen_at_the_mentor_epochs(word_task):
    mentor = ScriptedBackend([REPLY])
    run = Catalyst(word_task, mentor, _config())
    result = run.run()
    assert [e["epoch"] for e in run.record.events("mentor")] == [0, 2]
    restarts = run.record.events("restart")
    assert [e["epoch"] for e in restarts] == [0, 2]
    assert all(e["prompt"] == "rate the mood of this word" for e in restarts)
    assert result.restarts == 2
    assert result.history["restarted"].tolist() == [True, False, True, False]
    assert len(mentor.requests) == 2
    # The shown candidates were scored and listed worst first (best last).
    shown = run.record.events("candidates")[0]["shown"]
    assert 1 <= len(shown) <= 5
    text = mentor.requests[0][1].content
    losses = [float(line.split(":")[1]) for line in text.splitlines() if "loss:" in line]
    assert losses == sorted(losses, reverse=True)


def test_best_proposal_restart_scores_every_valid_proposal(word_task):
    run = Catalyst(word_task, ScriptedBackend([REPLY]), _config(restart_from="best"))
    run.run()
    first = run.record.events("restart")[0]
    assert [s["prompt"] for s in first["scored"]] == [
        "rate the mood of this word",
        "score the feeling",
        "tone",
    ]
    best = min(first["scored"], key=lambda s: s["validation_loss"])
    assert first["prompt"] == best["prompt"]


def test_the_kept_state_is_the_best_one_seen(word_task):
    run = Catalyst(word_task, ScriptedBackend([REPLY]), _config(epochs=5))
    result = run.run()
    seen = _metrics(run.record)
    assert result.best_validation == pytest.approx(min(seen))
    finish = run.record.events("finish")[0]
    assert finish["best_validation"] == pytest.approx(min(seen))


def test_a_dead_mentor_does_not_stop_training(word_task, dead_mentor, caplog):
    with caplog.at_level(logging.WARNING, logger="llmbo.catalyst"):
        run = Catalyst(word_task, dead_mentor, _config())
        result = run.run()
    assert len(result.history) == 4
    assert result.restarts == 0
    skipped = run.record.events("no_restart")
    assert [e["epoch"] for e in skipped] == [0, 2]
    assert all("LLMUnavailableError" in e["reason"] for e in skipped)
    assert "continuing on gradients alone" in caplog.text
    mentor_events = run.record.events("mentor")
    assert all("connection refused" in e["error"] for e in mentor_events)


def test_unusable_replies_are_rejected_with_reasons(word_task):
    reply = "Here are three prompts:\nzzzz qqqq\n" + " ".join(["rate"] * 12)
    run = Catalyst(word_task, ScriptedBackend([reply]), _config(mentor_epochs=(1,)))
    result = run.run()
    assert result.restarts == 0
    rejected = run.record.events("mentor")[0]["rejected"]
    reasons = {r["line"]: r["reason"] for r in rejected}
    assert reasons["Here are three prompts:"] == "a heading, not a prompt"
    assert "vocabulary" in reasons["zzzz qqqq"]
    assert "longer than 9 words" in reasons[" ".join(["rate"] * 12)]


def test_gradient_only_runs_without_a_mentor(word_task):
    result = Catalyst(word_task, None, _config()).run()
    assert result.restarts == 0 and len(result.history) == 4
    assert result.test_metric > 0


def test_an_interrupted_run_resumes_where_it_stopped(word_task, tmp_path):
    path = str(tmp_path / "catalyst.db")
    full = Catalyst(word_task, ScriptedBackend([REPLY]), _config()).run()

    class Interrupting(ScriptedBackend):
        def chat(self, messages, generation=None):
            if len(self.requests) == 1:
                raise KeyboardInterrupt
            return super().chat(messages, generation)

    with pytest.raises(KeyboardInterrupt):
        Catalyst(word_task, Interrupting([REPLY]), _config(), storage=path).run()
    resumed = Catalyst(word_task, ScriptedBackend([REPLY]), _config(), storage=path)
    before = len(resumed.record.events())
    result = resumed.run()
    assert len(resumed.record.events()) > before
    # Epoch 2 was interrupted after its end was recorded, before its checkpoint: it ran
    # again after the resume (both records are kept).
    assert [e["epoch"] for e in resumed.record.events("epoch")] == [0, 1, 2, 2, 3]
    assert [e["after_epoch"] for e in resumed.record.events("resume")] == [1]
    assert result.best_validation == pytest.approx(full.best_validation, rel=1e-5)
    assert result.history["epoch"].tolist() == [0, 1, 2, 3]


def test_reopening_with_other_settings_is_refused(word_task, tmp_path):
    path = str(tmp_path / "catalyst.db")
    Catalyst(word_task, None, _config(epochs=1, mentor_epochs=()), storage=path)
    with pytest.raises(StudySettingsError, match="config"):
        Catalyst(word_task, None, _config(epochs=2, mentor_epochs=()), storage=path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "epochs must be an integer >= 1"),
        (dict(mentor_epochs=(5,)), "mentor_epochs"),
        (dict(num_virtual_tokens=0), "num_virtual_tokens"),
        (dict(restart_from="worst"), "restart_from"),
        (dict(learning_rate=-1.0), "learning_rate"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        _config(**kwargs)


def test_zero_rounds_is_refused():
    with pytest.raises(InputError, match="rounds must be an integer >= 1"):
        CatalystConfig.with_rounds(0)


def test_the_projection_picks_the_most_similar_token(word_task):
    model = SoftPromptModel(word_task, 4, torch.device("cpu"))
    emb = model.word_embeddings.detach()
    a = model.tokenizer.convert_tokens_to_ids("happy")
    b = model.tokenizer.convert_tokens_to_ids("grim")
    # Mostly "happy", a little "grim": the nearest token is "happy"; the least similar
    # token (what a reversed sort would pick) is neither.
    vectors = torch.stack([0.9 * emb[a] + 0.1 * emb[b], 0.1 * emb[a] + 0.9 * emb[b]])
    assert model.nearest_tokens(vectors) == [a, b]
    cos = torch.nn.functional.cosine_similarity(vectors[:1], emb, dim=-1)
    assert int(cos.argmin()) != a
    # Special tokens are never chosen, even when they are the closest.
    cls = model.tokenizer.cls_token_id
    assert model.nearest_tokens(emb[[cls]]) != [cls]
    # Text -> vectors -> tokens round trip, padded with the pad embedding.
    ids = model.text_tokens("rate the mood")
    model.set_prompt(model.token_vectors(ids))
    assert model.nearest_tokens()[:3] == ids
    assert model.decode(model.nearest_tokens()).startswith("rate the mood")


def test_init_text_without_vocabulary_tokens_is_refused(word_task):
    with pytest.raises(InputError, match="init_text"):
        Catalyst(word_task, None, _config(init_text="zzzz")).run()


def test_an_unreachable_http_mentor_does_not_stop_training(word_task):
    import socket

    from llmbo.llm import make_backend

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = make_backend(
        "openai",
        model="mentor",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key_env=None,
        timeout=2.0,
        max_retries=0,
    )
    run = Catalyst(word_task, backend, _config(epochs=2, mentor_epochs=(0,)))
    result = run.run()
    assert len(result.history) == 2 and result.restarts == 0
    assert "LLMUnavailableError" in run.record.events("no_restart")[0]["reason"]


def test_a_guarded_restart_happens_only_when_the_proposal_is_better(word_task):
    run = Catalyst(word_task, ScriptedBackend([REPLY]), _config(restart_when="improves"))
    run.run()
    restarts = {e["epoch"] for e in run.record.events("restart")}
    refused = {e["epoch"]: e["reason"] for e in run.record.events("no_restart")}
    assert restarts | set(refused) == {0, 2} and not restarts & set(refused)
    for reason in refused.values():
        assert "not below the current prompt's" in reason
    for event in run.record.events("restart"):
        assert event["validation_loss"] < event["replaced_validation_loss"]
