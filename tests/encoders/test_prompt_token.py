"""``PromptTokenEncoder``: each distinct statement read once, a token that re-weights them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from llmbo.encoders.prompt_token import PromptTokenEncoder, split_statements
from llmbo.encoders.transformer import EncoderConfig, TextEncoder
from llmbo.errors import InputError

#: Six prompts of three statements that share most of their lines (5 distinct lines).
TEXTS = [
    f"{color} fox\n{animal} in the forest\nthe city"
    for color in ("red", "blue", "green")
    for animal in ("cat", "dog")
]


def _config(model: str) -> EncoderConfig:
    return EncoderConfig(model=model, device="cpu", dtype="float32", max_length=32)


@pytest.fixture(scope="module")
def prepared(tiny_model: str) -> PromptTokenEncoder:
    return PromptTokenEncoder(_config(tiny_model)).prepare(TEXTS)


def test_split_statements_numbers_each_distinct_line_once() -> None:
    statements, table = split_statements(["a\nb", "a\n c ", "b"], "\n")
    assert statements == ["a", "b", "c", ""]  # "" pads the shorter prompt
    assert table.tolist() == [[0, 1], [0, 2], [1, 3]]
    assert table.dtype == torch.long


def test_each_distinct_statement_is_read_once(
    prepared: PromptTokenEncoder, tiny_model: str
) -> None:
    lines = {line for text in TEXTS for line in text.split("\n")}
    assert len(lines) == 3 + 2 + 1
    states, index = prepared.statement_states, prepared.statement_index
    assert states is not None and index is not None
    assert states.shape[0] == len(lines)
    assert index.shape == (len(TEXTS), 3)
    assert prepared.n_statements == 3
    assert prepared.output_size == 3 * prepared.hidden_size
    # The statement states are what the transformer gives each statement alone.
    statements, _ = split_statements(TEXTS, "\n")
    alone = TextEncoder(_config(tiny_model)).prepare(statements).embed()
    assert torch.allclose(states, alone.float(), atol=1e-5)
    # Prompts sharing a line share its state.
    assert index[0, 2] == index[1, 2] == index[5, 2]  # "the city"
    assert index[0, 0] == index[1, 0] != index[2, 0]  # "red fox" / "blue fox"


def test_a_zero_token_gives_the_concatenated_statement_states(
    prepared: PromptTokenEncoder,
) -> None:
    prepared.reset_parameters()
    states, index = prepared.statement_states, prepared.statement_index
    features = prepared.embed()
    assert features.shape == (len(TEXTS), prepared.output_size)
    expected = torch.stack([torch.cat([states[j] for j in row]) for row in index.tolist()])
    assert torch.allclose(features, expected, atol=1e-6)
    weights = prepared.weights(torch.arange(len(TEXTS)))
    assert torch.allclose(weights, torch.full((len(TEXTS), 3), 1 / 3))


def test_a_trained_token_reweights_the_statements(prepared: PromptTokenEncoder) -> None:
    rows = torch.arange(len(TEXTS))
    plain = prepared.embed()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prepared.query.copy_(3 * torch.randn(prepared.hidden_size, generator=generator))
    try:
        weights = prepared.weights(rows)
        assert torch.allclose(weights.sum(-1), torch.ones(len(TEXTS)))
        assert (weights > 0).all()
        assert not torch.allclose(weights, torch.full_like(weights, 1 / 3), atol=1e-3)
        features = prepared.embed()
        assert not torch.allclose(features, plain)
        # Each statement's state scaled by S x its weight, concatenated.
        states = prepared.states(rows)
        expected = (states * (3 * weights).unsqueeze(-1)).flatten(1)
        assert torch.allclose(features, expected, atol=1e-5)
    finally:
        prepared.reset_parameters()
    assert torch.allclose(prepared.embed(), plain)


def test_only_the_token_is_trainable_and_it_gets_gradients(tiny_model: str) -> None:
    encoder = PromptTokenEncoder(_config(tiny_model), token=True).prepare(TEXTS[:4])
    (query,) = encoder.trainable_parameters()
    assert query.requires_grad
    assert query.shape == (encoder.hidden_size,)
    assert torch.equal(query, torch.zeros_like(query))
    mix = torch.randn(4, encoder.output_size, generator=torch.Generator().manual_seed(1))
    (encoder(torch.arange(4)) * mix).sum().backward()
    assert query.grad is not None
    assert query.grad.abs().sum() > 0
    assert not encoder.statement_states.requires_grad


def test_no_token_has_no_trainable_parameters(tiny_model: str) -> None:
    encoder = PromptTokenEncoder(_config(tiny_model), token=False).prepare(TEXTS)
    assert encoder.trainable_parameters() == []
    assert not any(p.requires_grad for p in encoder.parameters())
    states, index = encoder.statement_states, encoder.statement_index
    expected = torch.stack([torch.cat([states[j] for j in row]) for row in index.tolist()])
    assert torch.allclose(encoder.embed(), expected, atol=1e-6)


def test_shorter_prompts_are_padded_with_an_empty_statement(tiny_model: str) -> None:
    texts = ["red fox\nthe city", "blue cat"]
    encoder = PromptTokenEncoder(_config(tiny_model)).prepare(texts)
    assert encoder.statement_states.shape[0] == 4  # red fox, the city, blue cat, ""
    assert encoder.statement_index.tolist() == [[0, 1], [2, 3]]
    assert encoder.embed().shape == (2, 2 * encoder.hidden_size)


def test_in_context_reads_each_prompt_whole(tiny_model: str) -> None:
    config = replace(_config(tiny_model), max_length=64)
    encoder = PromptTokenEncoder(config, in_context=True).prepare(TEXTS)
    assert encoder.statement_index.shape == (len(TEXTS), 3)
    assert encoder.statement_states.shape[0] == 3 * len(TEXTS)  # one state per prompt line
    assert encoder.embed().shape == (len(TEXTS), encoder.output_size)
    # In context a shared line ("the city") reads differently in different prompts.
    states = encoder.states(torch.arange(len(TEXTS)))
    assert not torch.allclose(states[0, 2], states[2, 2])


def test_unprepared_encoder_says_what_to_do(tiny_model: str) -> None:
    encoder = PromptTokenEncoder(_config(tiny_model))
    with pytest.raises(InputError, match=r"Call prepare\(texts\) first"):
        encoder.embed()
    with pytest.raises(InputError, match="prepare"):
        encoder.trainable_parameters()
