"""GPTModel and transformers' GPT2LMHeadModel: weights both ways, equal logits and tokens.

Tiny GPT-2 configs with random weights, built here: nothing comes from the Hub.
transformers is the reference, computed independently of attnkit.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from attnkit.models import GPTModel, generate  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 4, "vocab_size": 100, "n_positions": 64}
FP32 = {"atol": 1e-5, "rtol": 0.0}
FP64 = {"atol": 1e-12, "rtol": 0.0}


def gpt2(dtype: torch.dtype = torch.float32, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny GPT2LMHeadModel in eval mode, every weight random (norms near 1, biases not 0).

    transformers' own initialisation leaves biases at zero and norms at one, which
    would hide a bias or norm copied to the wrong place; these weights do not.
    """
    config = transformers.GPT2Config(
        **{**TINY, "bos_token_id": None, "eos_token_id": None, **overrides}
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).to(dtype).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".ln_" in name and name.endswith("weight"):
                parameter.uniform_(0.5, 1.5)
            else:
                parameter.normal_(0.0, 0.2)
    return model


def tokens(batch: int = 3, length: int = 20, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"], (batch, length), generator=generator)


def logits_of(model: torch.nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(model, GPTModel):
            return model(token_ids)
        return model(token_ids).logits


def test_from_transformers_gives_the_same_logits():
    reference = gpt2()
    model = GPTModel.from_transformers(reference)
    assert not model.training
    torch.testing.assert_close(logits_of(model, tokens()), logits_of(reference, tokens()), **FP32)


def test_from_transformers_in_float64_agrees_to_rounding():
    reference = gpt2(torch.float64)
    model = GPTModel.from_transformers(reference)
    assert model.tok_emb.weight.dtype == torch.float64
    torch.testing.assert_close(logits_of(model, tokens()), logits_of(reference, tokens()), **FP64)


def test_the_config_comes_from_the_gpt2_model():
    model = GPTModel.from_transformers(gpt2(embd_pdrop=0.2, attn_pdrop=0.2, resid_pdrop=0.2))
    expected = {
        "vocab_size": 100,
        "context_length": 64,
        "emb_dim": 32,
        "n_heads": 4,
        "n_layers": 2,
        "attention": "multihead",
        "drop_rate": 0.2,
        "qkv_bias": True,
        "position_embedding": True,
        "tie_embeddings": True,
    }
    assert {key: model.config[key] for key in expected} == expected


def test_to_transformers_back_again_gives_the_same_logits_and_weights():
    reference = gpt2()
    back = GPTModel.from_transformers(reference).to_transformers()
    assert isinstance(back, transformers.GPT2LMHeadModel)
    assert not back.training
    torch.testing.assert_close(logits_of(back, tokens()), logits_of(reference, tokens()), **FP32)
    theirs, ours = reference.state_dict(), back.state_dict()
    assert theirs.keys() == ours.keys()
    for key in theirs:
        assert torch.equal(theirs[key], ours[key]), key  # copies, so exactly equal


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_a_gptmodel_goes_to_transformers_and_back(qkv_bias, tie_embeddings):
    torch.manual_seed(0)
    config = {"vocab_size": 100, "context_length": 64, "emb_dim": 32, "n_heads": 4,
              "n_layers": 2, "qkv_bias": qkv_bias, "tie_embeddings": tie_embeddings}  # fmt: skip
    model = GPTModel(config).eval()
    converted = model.to_transformers()
    torch.testing.assert_close(logits_of(converted, tokens()), logits_of(model, tokens()), **FP32)
    if not qkv_bias:
        assert all(not layer.attn.c_attn.bias.any() for layer in converted.transformer.h)
    again = GPTModel.from_transformers(converted)
    torch.testing.assert_close(logits_of(again, tokens()), logits_of(model, tokens()), **FP32)
    assert again.config["tie_embeddings"] is tie_embeddings


@pytest.mark.parametrize("batch", [1, 2])
def test_greedy_generation_agrees_token_for_token(batch):
    reference = gpt2()
    model = GPTModel.from_transformers(reference)
    prompt = tokens(batch=batch, length=5)
    ours = generate(model, prompt, 8)
    theirs = reference.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=False,
        max_new_tokens=8,
        min_new_tokens=8,
        pad_token_id=0,
    )
    assert ours.shape == (batch, 13)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, generate(model, prompt, 8, use_cache=False))
    assert len(set(ours[:, 5:].flatten().tolist())) > 1  # not one token over and over


def test_tied_embeddings_stay_one_parameter():
    reference = gpt2()
    assert reference.lm_head.weight is reference.transformer.wte.weight
    model = GPTModel.from_transformers(reference)
    assert model.out_head.weight is model.tok_emb.weight
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    embedding_sized = [p for p in model.parameters() if p.shape == (100, 32)]
    assert len(embedding_sized) == 1

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(tokens()).logsumexp(-1).mean().backward()
    optimizer.step()
    assert model.out_head.weight is model.tok_emb.weight
    back = model.to_transformers()
    assert back.training
    assert back.lm_head.weight is back.transformer.wte.weight
    model.eval()
    torch.testing.assert_close(logits_of(back.eval(), tokens()), logits_of(model, tokens()), **FP32)


def test_an_untied_head_is_copied_as_its_own_parameter():
    reference = gpt2(tie_word_embeddings=False)
    assert reference.lm_head.weight is not reference.transformer.wte.weight
    model = GPTModel.from_transformers(reference)
    assert model.config["tie_embeddings"] is False
    assert model.out_head.weight is not model.tok_emb.weight
    assert torch.equal(model.out_head.weight, reference.lm_head.weight)
    torch.testing.assert_close(logits_of(model, tokens()), logits_of(reference, tokens()), **FP32)
    back = model.to_transformers()
    assert back.lm_head.weight is not back.transformer.wte.weight
    assert torch.equal(back.lm_head.weight, reference.lm_head.weight)


def test_the_mode_follows_and_the_callers_random_state_is_untouched():
    reference = gpt2().train()
    state = torch.get_rng_state()
    model = GPTModel.from_transformers(reference)
    back = model.to_transformers()
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training and back.training


def test_settings_reach_the_gpt2_config():
    model = GPTModel.from_transformers(gpt2())
    converted = model.to_transformers(attn_implementation="eager", eos_token_id=7)
    assert converted.config._attn_implementation == "eager"
    assert converted.config.eos_token_id == 7
    assert converted.config.bos_token_id is None  # 50256 is not in a 100-token vocabulary


def test_settings_may_not_set_what_the_model_decides():
    model = GPTModel.from_transformers(gpt2())
    with pytest.raises(ValueError, match="n_layer, n_head are decided by the model's config"):
        model.to_transformers(n_layer=4, n_head=2)


def test_a_drop_rate_chooses_between_three_different_rates():
    reference = gpt2(embd_pdrop=0.1, attn_pdrop=0.0, resid_pdrop=0.2)
    with pytest.raises(ValueError, match=r"three different dropout rates \(embd_pdrop=0.1, attn_pdrop=0.0, resid_pdrop=0.2\).*drop_rate="):  # fmt: skip # noqa: E501
        GPTModel.from_transformers(reference)
    assert GPTModel.from_transformers(reference, drop_rate=0.0).config["drop_rate"] == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"activation_function": "relu"}, "activation_function 'relu': GPTModel's feed-forward"),
        ({"n_inner": 64}, "a feed-forward 64 wide .n_inner.: GPTModel's is 4 \\* n_embd = 128"),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon 1e-06: GPTModel's layer norms use"),
        ({"scale_attn_weights": False}, "unscaled attention scores"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scores scaled by the inverse layer index"),
        ({"add_cross_attention": True}, "cross-attention"),
    ],
)
def test_what_gptmodel_cannot_express_is_named(overrides, message):
    with pytest.raises(ValueError, match=f"GPTModel cannot express this GPT-2 model: {message}"):
        GPTModel.from_transformers(gpt2(**overrides))


def test_every_reason_is_named_at_once():
    with pytest.raises(ValueError, match="activation_function 'relu'.*; layer_norm_epsilon"):
        GPTModel.from_transformers(gpt2(activation_function="relu", layer_norm_epsilon=1e-6))


def test_the_other_tanh_gelus_are_accepted():
    reference = gpt2(activation_function="gelu_pytorch_tanh")
    model = GPTModel.from_transformers(reference)
    torch.testing.assert_close(logits_of(model, tokens()), logits_of(reference, tokens()), **FP32)


@pytest.mark.parametrize("other", ["GPT2Model", "GPTModel"])
def test_only_a_gpt2_lm_head_model_converts(other):
    model = (
        transformers.GPT2Model(transformers.GPT2Config(**TINY))
        if other == "GPT2Model"
        else GPTModel.from_transformers(gpt2())
    )
    with pytest.raises(TypeError, match=f"expected a transformers GPT2LMHeadModel, got {other}"):
        GPTModel.from_transformers(model)


BASE = {"vocab_size": 100, "context_length": 64, "emb_dim": 32, "n_heads": 4, "n_layers": 2}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"attention": "gqa", "num_kv_heads": 2},
            "layer 0's attention 'gqa': GPT-2's is 'multihead'",
        ),
        ({"attention": "causal"}, "layer 0's attention 'causal'"),
        (
            {"rope_base": 10_000, "position_embedding": False},
            "no learned position embedding.*layer 0's rope_base",
        ),
        ({"alibi": True}, "layer 0's alibi: GPT-2's attention has no alibi"),
        ({"qk_norm": True}, "layer 0's qk_norm"),
        ({"softcap": 30.0}, "layer 0's softcap"),
        ({"sinks": True}, "layer 0's sinks"),
        ({"layer_pattern": [{}, {"window": 8}]}, "layer 1's window"),
        (
            {"layer_pattern": [{}, {"n_heads": 2}]},
            "layer 1 has 2 heads: GPT-2 has n_heads=4 in every layer",
        ),
    ],
)
def test_what_gpt2_cannot_express_is_named(change, message):
    model = GPTModel({**BASE, **change})
    with pytest.raises(ValueError, match=f"GPT-2 cannot express this model: {message}"):
        model.to_transformers()


def test_another_kernel_is_still_gpt2():
    torch.manual_seed(0)
    model = GPTModel({**BASE, "attention_options": {"kernel": "explicit"}}).eval()
    converted = model.to_transformers()
    torch.testing.assert_close(logits_of(converted, tokens()), logits_of(model, tokens()), **FP32)


def test_without_transformers_the_error_says_how_to_install_it(monkeypatch):
    model = GPTModel(BASE)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now fails
    for convert in (model.to_transformers, lambda: GPTModel.from_transformers(object())):
        with pytest.raises(ImportError, match=r"pip install 'attnkit\[transformers\]'"):
            convert()


def test_importing_attnkit_models_does_not_import_transformers():
    code = (
        "import sys, attnkit, attnkit.models; "
        "from attnkit.models import GPTModel; "
        "assert 'transformers' not in sys.modules, 'transformers was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tie_embeddings_must_be_a_bool():
    with pytest.raises(TypeError, match="tie_embeddings must be a bool, got 'yes'"):
        GPTModel({**BASE, "tie_embeddings": "yes"})


def test_tie_embeddings_is_the_same_for_every_layer():
    with pytest.raises(ValueError, match="may not set 'tie_embeddings', which is the same"):
        GPTModel({**BASE, "layer_pattern": [{"tie_embeddings": True}]})
