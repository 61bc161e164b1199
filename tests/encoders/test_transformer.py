"""TextEncoder on tiny random-weight transformers built from configs (no download).

The fast path (hidden states entering the top block cached once, only the top block run
per step) must give exactly what a plain forward pass of the whole Hugging Face model gives.
Those references are computed here directly with ``transformers``, not through llmbo.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
import torch

from conftest import WORDS
from llmbo.encoders.transformer import EncoderConfig, TextEncoder
from llmbo.errors import InputError, ModelLoadError

TEXTS = [
    "red fox in the forest",
    "blue cat on the hill",
    "the dog",
    "a big small owl with green bee and river at the city farm",
    "white yak",
    "fox fox fox",
]
POOLINGS = ["mean", "cls", "last"]


def _config(model: str, **kwargs: object) -> EncoderConfig:
    return EncoderConfig(model=model, device="cpu", dtype="float32", **kwargs)  # type: ignore[arg-type]


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Reference pooling of a right-padded batch."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        return hidden[torch.arange(len(hidden)), mask.sum(1) - 1]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


@torch.no_grad()
def reference_features(model_dir: str, texts: list[str], pooling: str) -> torch.Tensor:
    """Pooled last hidden states of a plain full forward pass (the encoder of enc-dec models)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    net = AutoModel.from_pretrained(model_dir).eval()
    if AutoConfig.from_pretrained(model_dir).is_encoder_decoder:
        net = net.get_encoder()
    enc = tok(texts, padding=True, return_tensors="pt")
    out = net(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    return _pool(out.last_hidden_state.float(), enc["attention_mask"], pooling)


def _perturb_lora(encoder: TextEncoder, seed: int, scale: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(encoder.net.named_parameters()):
            if "lora_" in name:
                p.copy_(scale * torch.randn(p.shape, generator=gen))


def _all(n: int) -> torch.Tensor:
    return torch.arange(n)


# ------------------------------------------------------------------- tiny BERT (fixture)
def test_tiny_model_tokenizer_reads_its_vocabulary(tiny_model: str) -> None:
    """Every test below needs words to be tokens, not [UNK] (else all texts look alike)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ids = tok("red fox in the forest")["input_ids"]
    assert tok.unk_token_id not in ids
    assert len(set(ids)) == len(ids)
    assert len(tok) >= len(WORDS)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_frozen_features_equal_full_forward(tiny_model: str, pooling: str) -> None:
    expected = reference_features(tiny_model, TEXTS, pooling)
    encoder = TextEncoder(_config(tiny_model, pooling=pooling)).prepare(TEXTS)
    assert not encoder.trainable
    got = encoder.embed()
    assert got.shape == (len(TEXTS), 32) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder(torch.tensor([4, 1])), expected[[4, 1]])
    # Different texts must give different features (the model reads the words).
    assert torch.cdist(expected, expected).fill_diagonal_(1.0).min() > 1e-3


@pytest.mark.parametrize("pooling", POOLINGS)
def test_cached_top_block_with_fresh_lora_equals_full_forward(
    tiny_model: str, pooling: str
) -> None:
    expected = reference_features(tiny_model, TEXTS, pooling)
    torch.manual_seed(0)
    encoder = TextEncoder(_config(tiny_model, pooling=pooling), lora={}).prepare(TEXTS)
    assert encoder.trainable and encoder.cache_hidden_states
    # Fresh LoRA: B = 0, so the adapted model is the pretrained one.
    for name, p in encoder.net.named_parameters():
        if "lora_B" in name:
            assert torch.count_nonzero(p) == 0
    torch.testing.assert_close(encoder(_all(len(TEXTS))), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.embed(), expected, atol=1e-5, rtol=1e-5)
    # Any subset and order of rows.
    index = torch.tensor([5, 0, 3])
    torch.testing.assert_close(encoder(index), expected[index], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_uncached_path_equals_cached_path_after_training_lora(
    tiny_model: str, pooling: str
) -> None:
    config = _config(tiny_model, pooling=pooling)
    cached = TextEncoder(config, lora={}, top_layers=2).prepare(TEXTS)
    naive = TextEncoder(config, lora={}, top_layers=2, cache_hidden_states=False)
    naive.prepare(TEXTS)
    assert naive.cached_activations is None
    before = cached(_all(len(TEXTS))).detach()
    _perturb_lora(cached, seed=1)
    _perturb_lora(naive, seed=1)
    after = cached(_all(len(TEXTS)))
    assert (after - before).abs().max() > 1e-2  # the perturbation matters ...
    torch.testing.assert_close(naive(_all(len(TEXTS))), after, atol=1e-5, rtol=1e-5)
    index = torch.tensor([3, 2])
    torch.testing.assert_close(naive(index), cached(index), atol=1e-5, rtol=1e-5)


def test_features_do_not_depend_on_batch_composition(tiny_model: str) -> None:
    """Padding to a longer neighbour must not change a candidate's features."""
    torch.manual_seed(0)
    encoder = TextEncoder(_config(tiny_model), lora={}, soft_tokens=2).prepare(TEXTS)
    _perturb_lora(encoder, seed=3)
    together = encoder(_all(len(TEXTS)))
    for i in range(len(TEXTS)):
        torch.testing.assert_close(encoder(torch.tensor([i]))[0], together[i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.embed(), together, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("top_layers", [1, 2])
def test_only_top_block_lora_is_trainable_and_gets_gradients(
    tiny_model: str, top_layers: int
) -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(_config(tiny_model), lora={}, top_layers=top_layers)
    encoder.prepare(TEXTS)
    top = {f"layer.{i}." for i in range(4 - top_layers, 4)}
    trainable = {n: p for n, p in encoder.named_parameters() if p.requires_grad}
    # query and value adapters (A and B) in each top layer, nothing else.
    assert len(trainable) == 4 * top_layers
    for name in trainable:
        assert "lora_" in name and any(t in name for t in top), name
    assert {id(p) for p in encoder.trainable_parameters()} == {id(p) for p in trainable.values()}
    assert len([n for n, _ in encoder.named_parameters() if "lora_" in n]) == 4 * top_layers

    encoder(_all(len(TEXTS))).pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
        elif "lora_B" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # With B != 0, A receives gradients too.
    _perturb_lora(encoder, seed=2)
    encoder.zero_grad()
    encoder(_all(len(TEXTS))).pow(2).sum().backward()
    for name, p in trainable.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_lora_settings_are_applied(tiny_model: str) -> None:
    from peft.tuners.lora import LoraLayer

    settings = {"r": 2, "lora_alpha": 8.0, "use_rslora": True, "target_modules": ["key"]}
    encoder = TextEncoder(_config(tiny_model), lora=settings)
    layers = [m for m in encoder.net.modules() if isinstance(m, LoraLayer)]
    assert len(layers) == 1  # only `key` of the single top layer (25 % of 4)
    (layer,) = layers
    assert layer.r["default"] == 2
    assert layer.scaling["default"] == pytest.approx(8.0 / 2**0.5)  # rsLoRA: alpha / sqrt(r)


def test_soft_tokens_change_output_and_get_gradients(tiny_model: str) -> None:
    plain = TextEncoder(_config(tiny_model)).prepare(TEXTS).embed()
    torch.manual_seed(0)
    encoder = TextEncoder(_config(tiny_model), soft_tokens=3).prepare(TEXTS)
    assert encoder.trainable
    assert encoder.soft_tokens is not None and encoder.soft_tokens.shape == (3, 32)
    assert [p.shape for p in encoder.trainable_parameters()] == [torch.Size([3, 32])]
    out = encoder(_all(len(TEXTS)))
    assert out.shape == plain.shape
    assert (out - plain).abs().max() > 1e-2
    out.sum().backward()
    assert encoder.soft_tokens.grad is not None and encoder.soft_tokens.grad.abs().sum() > 0
    # Re-initialisation follows the global RNG.
    torch.manual_seed(1)
    encoder.reset_parameters()
    first = encoder.soft_tokens.detach().clone()
    torch.manual_seed(1)
    encoder.reset_parameters()
    torch.testing.assert_close(encoder.soft_tokens.detach(), first)
    torch.manual_seed(2)
    encoder.reset_parameters()
    assert not torch.equal(encoder.soft_tokens.detach(), first)


def test_texts_are_tokenised_once(tiny_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    calls: list[int] = []
    original = PreTrainedTokenizerBase.__call__

    def counting(self: PreTrainedTokenizerBase, *args: object, **kwargs: object) -> object:
        calls.append(len(args[0]) if args else -1)  # type: ignore[arg-type]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counting)
    encoder = TextEncoder(_config(tiny_model, batch_size=2), lora={}, soft_tokens=1)
    encoder.prepare(TEXTS)
    for _ in range(3):
        encoder(torch.tensor([0, 3])).sum().backward()
    encoder.embed()
    naive = TextEncoder(_config(tiny_model), lora={}, cache_hidden_states=False)
    naive.prepare(TEXTS)
    naive(torch.tensor([1, 2]))
    naive.embed()
    assert calls == [len(TEXTS), len(TEXTS)]


SEGMENT_TEXTS = [
    "red fox\nin the forest",
    "a big small owl with green bee\nriver",
    "the dog\nat the city farm",
]


@torch.no_grad()
def reference_segment_features(model_dir: str, texts: list[str]) -> torch.Tensor:
    """Mean of the full forward's token states per newline-separated segment, concatenated."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    net = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    for text in texts:
        enc = tok(
            text, return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt"
        )
        hidden = net(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0][0]
        cut = text.index("\n")
        starts = enc["offset_mapping"][0, :, 0]
        real = enc["special_tokens_mask"][0] == 0
        first = real & (starts < cut)
        second = real & (starts > cut)
        rows.append(torch.cat([hidden[first].mean(0), hidden[second].mean(0)]))
    return torch.stack(rows)


def test_segment_pooling_equals_per_segment_means(tiny_model: str) -> None:
    expected = reference_segment_features(tiny_model, SEGMENT_TEXTS)
    config = _config(tiny_model, pooling="segments")
    frozen = TextEncoder(config).prepare(SEGMENT_TEXTS)
    assert frozen.n_segments == 2 and frozen.output_size == 64
    torch.testing.assert_close(frozen.embed(), expected, atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    adapted = TextEncoder(config, lora={}).prepare(SEGMENT_TEXTS)
    torch.testing.assert_close(adapted(_all(3)), expected, atol=1e-5, rtol=1e-5)


def test_truncation_to_max_length(tiny_model: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="llmbo"):
        long = TextEncoder(_config(tiny_model, max_length=4)).prepare(["red fox in the forest"])
    assert "truncated" in caplog.text
    short = TextEncoder(_config(tiny_model)).prepare(["red fox"])
    # [CLS] red fox [SEP] either way.
    torch.testing.assert_close(long.embed(), short.embed())


def test_bfloat16_autocast_is_close_to_float32(tiny_model: str) -> None:
    exact = TextEncoder(_config(tiny_model)).prepare(TEXTS).embed()
    config = EncoderConfig(model=tiny_model, device="cpu", dtype="bfloat16")
    low = TextEncoder(config).prepare(TEXTS).embed()
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, exact, atol=0.1, rtol=0.1)


def test_cached_activations_are_stored_in_the_compute_dtype(tiny_model: str) -> None:
    # The cached LoRA path feeds stored activations to the top module without autocast when
    # the encoder computes in float32, so the store must follow the compute dtype (a
    # bfloat16 store on a GPU with dtype="float32" made every LoRA fit fail there).
    expected = {
        ("cpu", "auto"): torch.float32,
        ("cuda", "auto"): torch.bfloat16,
        ("cuda", "float32"): torch.float32,
        ("cuda", "float16"): torch.float16,
        ("cpu", "bfloat16"): torch.float32,  # a CPU keeps float32 activations
    }
    for (device, dtype), stored in expected.items():
        config = EncoderConfig(model=tiny_model, device="cpu", dtype=dtype)  # type: ignore[arg-type]
        encoder = TextEncoder(config)
        encoder.device = torch.device(device)  # only the device's type is consulted
        assert encoder.cache_dtype == stored, (device, dtype)


def test_config_validation(tiny_model: str) -> None:
    with pytest.raises(InputError, match="pooling"):
        EncoderConfig(model=tiny_model, pooling="max")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="dtype"):
        EncoderConfig(model=tiny_model, dtype="float64")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="positive"):
        EncoderConfig(model=tiny_model, max_length=0)
    with pytest.raises(InputError, match=r"top_layers must be in \[1, 4\]"):
        TextEncoder(_config(tiny_model), top_layers=5)
    with pytest.raises(InputError, match="soft_tokens"):
        TextEncoder(_config(tiny_model), soft_tokens=-1)
    with pytest.raises(InputError, match="empty"):
        TextEncoder(_config(tiny_model)).prepare([])
    with pytest.raises(RuntimeError, match="prepare"):
        TextEncoder(_config(tiny_model))(torch.tensor([0]))


# ------------------------------------------------------------------------ load errors
@pytest.mark.parametrize("missing", ["/no/such/dir/model", "./no-such-model-here", "~/no/such"])
def test_unknown_model_path_fails_fast_naming_the_path(missing: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        TextEncoder(_config(missing))
    assert time.perf_counter() - start < 5.0
    assert repr(missing) in str(info.value)
    assert "minilm" in str(info.value)  # says what to do instead
    assert isinstance(info.value, OSError)


def test_unknown_hub_id_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="'nobody/no-such-model-xyz'"):
        TextEncoder(_config("nobody/no-such-model-xyz"))
    assert time.perf_counter() - start < 10.0


def test_directory_without_a_model_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=str(tmp_path.name)):
        TextEncoder(_config(str(tmp_path)))


# -------------------------------------------------------- decoders and encoder-decoders
def _word_tokenizer(directory: Path) -> int:
    """A word-level fast tokenizer over the test vocabulary (with pad, unk and eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    )
    tok.save_pretrained(directory)
    return len(vocab)


def _build(kind: str, directory: Path) -> str:
    from transformers import (
        GPT2Config,
        GPT2Model,
        LlamaConfig,
        LlamaModel,
        MPNetConfig,
        MPNetModel,
        T5Config,
        T5Model,
    )

    directory.mkdir(parents=True, exist_ok=True)
    n = _word_tokenizer(directory)
    sizes = {
        "vocab_size": n,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
    }
    torch.manual_seed(0)
    if kind == "gpt2":
        net = GPT2Model(
            GPT2Config(
                vocab_size=n,
                n_embd=32,
                n_layer=4,
                n_head=4,
                n_positions=64,
                pad_token_id=0,
                bos_token_id=2,
                eos_token_id=2,
            )
        )
    elif kind == "llama":
        net = LlamaModel(
            LlamaConfig(**sizes, num_key_value_heads=2, bos_token_id=2, eos_token_id=2)
        )
    elif kind == "mpnet":  # relative position bias computed by the encoder, not a layer
        net = MPNetModel(MPNetConfig(**sizes), add_pooling_layer=False)
    else:
        net = T5Model(
            T5Config(
                vocab_size=n,
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=4,
                num_decoder_layers=2,
                num_heads=4,
                pad_token_id=0,
                eos_token_id=2,
                decoder_start_token_id=0,
            )
        )
    net.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def decoder_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def t5_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build("t5", tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def mpnet_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build("mpnet", tmp_path_factory.mktemp("mpnet"))


@pytest.fixture(autouse=True)
def _quiet_peft() -> object:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        yield


def test_decoder_last_token_pooling_with_lora(decoder_model: str) -> None:
    expected = reference_features(decoder_model, TEXTS, "last")
    torch.manual_seed(0)
    encoder = TextEncoder(_config(decoder_model, pooling="last"), lora={})
    # The layer stack is found without knowing the architecture.
    assert len(encoder.layers) == 4
    encoder.prepare(TEXTS)
    torch.testing.assert_close(encoder(_all(len(TEXTS))), expected, atol=1e-5, rtol=1e-4)
    # Causal attention: the last real token, not padding, carries the pooled state.
    assert torch.cdist(expected, expected).fill_diagonal_(1.0).min() > 1e-4
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".3." in n for n in trainable)
    out = encoder(_all(len(TEXTS)))
    out.pow(2).sum().backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.trainable_parameters()
    )
    # Cached and naive paths agree once the adapters are trained.
    naive = TextEncoder(
        _config(decoder_model, pooling="last"), lora={}, cache_hidden_states=False
    ).prepare(TEXTS)
    _perturb_lora(encoder, seed=4)
    _perturb_lora(naive, seed=4)
    torch.testing.assert_close(
        naive(_all(len(TEXTS))), encoder(_all(len(TEXTS))), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("top_module", [None, "auto"])
def test_mpnet_cached_paths_equal_full_forward(mpnet_model: str, top_module: str | None) -> None:
    """MPNet (all-mpnet-base-v2's architecture): whole top layer and the "output" block."""
    expected = reference_features(mpnet_model, TEXTS, "mean")
    frozen = TextEncoder(_config(mpnet_model)).prepare(TEXTS)
    torch.testing.assert_close(frozen.embed(), expected, atol=1e-5, rtol=1e-4)
    assert torch.cdist(expected, expected).fill_diagonal_(1.0).min() > 1e-4
    torch.manual_seed(0)
    fast = TextEncoder(_config(mpnet_model), lora={}, top_module=top_module)
    fast.prepare(TEXTS)
    assert (fast.cached_activations == "top_module") == (top_module == "auto")
    torch.testing.assert_close(fast(_all(len(TEXTS))), expected, atol=1e-5, rtol=1e-4)
    # PEFT has no default targets for MPNet: every linear layer of the top layer is adapted.
    adapted = {n.split(".lora_")[0] for n, _ in fast.named_parameters() if ".lora_A" in n}
    suffixes = ["output.dense"] if top_module else ["attn.q", "attn.k", "attn.v", "attn.o"]
    assert all(".layer.3." in n for n in adapted)
    assert all(any(n.endswith(f) for n in adapted) for f in suffixes), adapted
    assert len(adapted) == (1 if top_module else 6)  # q, k, v, o and the feed-forward pair
    # Trained adapters: the cached path agrees with a plain forward pass of the LoRA model.
    targets = ["encoder.layer.3.output.dense"] if top_module else None
    naive = TextEncoder(
        _config(mpnet_model),
        lora={"target_modules": targets},
        top_layers=1,
        cache_hidden_states=False,
    ).prepare(TEXTS)
    _perturb_lora(fast, seed=2)
    _perturb_lora(naive, seed=2)
    after = fast(_all(len(TEXTS)))
    assert (after - expected).abs().max() > 1e-2
    torch.testing.assert_close(after, naive(_all(len(TEXTS))), atol=1e-5, rtol=1e-4)


def test_lora_fallback_without_linear_layers_names_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GPT-2's layers are Conv1D, not Linear: without PEFT's default targets for it, the
    fallback finds nothing to adapt and says so instead of failing inside PEFT."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model = _build("gpt2", tmp_path / "gpt2")
    monkeypatch.delitem(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, "gpt2")
    with pytest.raises(ModelLoadError, match=r"no torch Linear layer.*target_modules"):
        TextEncoder(_config(model, pooling="last"), lora={})


def test_encoder_decoder_uses_its_encoder(t5_model: str) -> None:
    from transformers.models.t5.modeling_t5 import T5Stack

    encoder = TextEncoder(_config(t5_model))
    assert isinstance(encoder.net, T5Stack) and not encoder.net.is_decoder
    assert encoder.hidden_size == 32
    got = encoder.prepare(TEXTS).embed()
    torch.testing.assert_close(
        got, reference_features(t5_model, TEXTS, "mean"), atol=1e-5, rtol=1e-4
    )


def test_encoder_decoder_top_block_falls_back_to_full_forward(
    t5_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    """T5's first block computes the relative position bias that later blocks reuse, so the
    top block alone is not the model: prepare() notices and runs the whole encoder."""
    expected = reference_features(t5_model, TEXTS, "mean")
    torch.manual_seed(0)
    with caplog.at_level("WARNING", logger="llmbo.encoders"):
        encoder = TextEncoder(_config(t5_model), lora={}).prepare(TEXTS)
    assert "do not reproduce" in caplog.text
    assert encoder.uses_full_forward and encoder.cached_activations is None
    torch.testing.assert_close(encoder(_all(len(TEXTS))), expected, atol=1e-5, rtol=1e-4)
    # Trained adapters (top block only) change the features and receive gradients.
    _perturb_lora(encoder, seed=5)
    out = encoder(_all(len(TEXTS)))
    assert (out - expected).abs().max() > 1e-3
    out.pow(2).sum().backward()
    grads = [p.grad for p in encoder.trainable_parameters()]
    assert grads and all(g is not None for g in grads)
    assert all(
        "lora_" in n and ".3." in n for n, p in encoder.named_parameters() if p.requires_grad
    )
    # Soft tokens enter at the top block, which does not work for this model.
    with pytest.raises(ModelLoadError, match="soft_tokens=0"):
        TextEncoder(_config(t5_model), lora={}, soft_tokens=2).prepare(TEXTS)


def test_encoder_decoder_mismatch_is_found_under_bfloat16(t5_model: str) -> None:
    """The check runs in float32: bfloat16's rounding must not hide T5's mismatch."""
    config = EncoderConfig(model=t5_model, device="cpu", dtype="bfloat16")
    encoder = TextEncoder(config, lora={}).prepare(TEXTS)
    assert encoder.uses_full_forward


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama", "mpnet"])
def test_models_that_split_cleanly_keep_the_cached_top_block(
    kind: str, dtype: str, tiny_model: str, tmp_path: Path
) -> None:
    model = tiny_model if kind == "bert" else _build(kind, tmp_path / kind)
    pooling = "last" if kind in ("gpt2", "llama") else "mean"
    config = EncoderConfig(model=model, device="cpu", dtype=dtype, pooling=pooling)  # type: ignore[arg-type]
    torch.manual_seed(0)
    encoder = TextEncoder(config, lora={"lora_dropout": 0.5}).prepare(TEXTS)
    assert not encoder.uses_full_forward and encoder.cached_activations == "hidden_states"
    # Trained adapters and LoRA dropout (the encoder stays in training mode) raise no false
    # alarm when the pool is prepared again, and scoring is deterministic.
    _perturb_lora(encoder, seed=6)
    encoder.prepare(TEXTS[::-1])
    assert not encoder.uses_full_forward
    torch.testing.assert_close(encoder.embed(), encoder.embed())


# ------------------------------------------------------------- top module (BERT "output")
@pytest.mark.parametrize("pooling", POOLINGS)
def test_top_module_path_with_fresh_lora_equals_full_forward(tiny_model: str, pooling: str) -> None:
    expected = reference_features(tiny_model, TEXTS, pooling)
    torch.manual_seed(0)
    encoder = TextEncoder(
        _config(tiny_model, pooling=pooling), lora={}, top_module="output"
    ).prepare(TEXTS)
    assert encoder.n_top == 1 and encoder.cached_activations == "top_module"
    torch.testing.assert_close(encoder(_all(len(TEXTS))), expected, atol=1e-5, rtol=1e-5)
    index = torch.tensor([5, 0, 3])
    torch.testing.assert_close(encoder(index), expected[index], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.embed(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", [*POOLINGS, "segments"])
def test_top_module_path_equals_full_model_with_the_same_trained_adapter(
    tiny_model: str, pooling: str
) -> None:
    """Cached inputs + cached frozen outputs == a plain LoRA model run from the embeddings."""
    config = _config(tiny_model, pooling=pooling, segment_separator=" ")
    fast = TextEncoder(config, lora={}, top_module="output").prepare(TEXTS)
    naive = TextEncoder(
        config,
        lora={"target_modules": ["encoder.layer.3.output.dense"]},
        top_layers=1,
        cache_hidden_states=False,
    ).prepare(TEXTS)
    assert sorted(n for n, _ in fast.net.named_parameters() if "lora_" in n) == sorted(
        n for n, _ in naive.net.named_parameters() if "lora_" in n
    )
    before = fast(_all(len(TEXTS))).detach()
    _perturb_lora(fast, seed=1)
    _perturb_lora(naive, seed=1)
    after = fast(_all(len(TEXTS)))
    assert (after - before).abs().max() > 1e-2
    torch.testing.assert_close(after, naive(_all(len(TEXTS))), atol=1e-5, rtol=1e-5)
    index = torch.tensor([4, 1])
    torch.testing.assert_close(fast(index), naive(index), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.embed(), naive.embed(), atol=1e-5, rtol=1e-5)


def test_top_module_trains_only_its_linear_layer(tiny_model: str) -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(_config(tiny_model), lora={}, top_module="output")
    encoder.prepare(TEXTS)
    names = sorted(n for n, p in encoder.named_parameters() if p.requires_grad)
    assert len(names) == 2 and all("layer.3.output.dense.lora_" in n for n in names), names
    _perturb_lora(encoder, seed=3)
    encoder(_all(len(TEXTS))).pow(2).sum().backward()
    for p in encoder.trainable_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_top_module_frozen_output_is_not_recomputed(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = TextEncoder(_config(tiny_model), lora={}, top_module="output")
    encoder.prepare(TEXTS)
    assert encoder.cached_frozen_outputs == ["dense"]
    assert encoder.top_module is not None
    base = encoder.top_module.get_submodule("dense").get_base_layer()
    linear = torch.nn.functional.linear
    shapes: list[tuple[int, ...]] = []

    def counting(x: torch.Tensor, weight: torch.Tensor, *args: object) -> torch.Tensor:
        shapes.append(tuple(weight.shape))
        return linear(x, weight, *args)

    monkeypatch.setattr(torch.nn.functional, "linear", counting)
    encoder(_all(len(TEXTS)))
    assert base.weight.shape == (32, 64)
    # The adapter's two low-rank products run; the frozen 64 -> 32 weight never does.
    assert sorted(shapes) == [(4, 64), (32, 4)]  # r = 4


def test_top_module_errors_name_the_problem(tiny_model: str) -> None:
    with pytest.raises(InputError, match=r"not a submodule.*intermediate"):
        TextEncoder(_config(tiny_model), lora={}, top_module="nope")
    with pytest.raises(InputError, match="soft_tokens and top_module"):
        TextEncoder(_config(tiny_model), lora={}, soft_tokens=2, top_module="output")
    with pytest.raises(InputError, match="leave top_layers unset or 1"):
        TextEncoder(_config(tiny_model), lora={}, top_layers=3, top_module="output")
    # The feed-forward input projection is not where the model's output comes from.
    wrong = TextEncoder(_config(tiny_model), lora={}, top_module="intermediate")
    with pytest.raises(ModelLoadError, match="does not produce this model's output"):
        wrong.prepare(TEXTS)
