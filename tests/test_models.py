"""GPTModel: built from every causal variant by name, its config checks, its cache, its training."""

from __future__ import annotations

import itertools

import pytest
import torch

import attnkit
from attnkit.models import GPTModel, causal_variants
from tests.ddp_worker import load_example
from tests.helpers import TOLERANCES

CONFIG = {
    "vocab_size": 40,
    "context_length": 16,
    "emb_dim": 12,
    "n_heads": 3,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": False,
    # Sizes that only some variants take: gqa its key-value heads, mla its latent.
    # Each variant is built with the keys it accepts.
    "num_kv_heads": 1,
    "kv_latent_dim": 4,
}
CAUSAL = causal_variants()
NOT_CAUSAL = [name for name in attnkit.list_variants() if name not in CAUSAL]
CACHED = [name for name in CAUSAL if attnkit.get_variant(name).supports_kv_cache]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_builtin_causal_variants_are_eligible():
    assert {"causal", "multihead", "multihead_wrapper"} <= set(CAUSAL)
    assert {"simple", "self_attention"} <= set(NOT_CAUSAL)


@pytest.mark.parametrize("name", CAUSAL)
def test_the_model_builds_and_runs_with_every_causal_variant(name):
    torch.manual_seed(0)
    model = GPTModel({**CONFIG, "attention": name})
    token_ids = torch.randint(0, CONFIG["vocab_size"], (2, 7))
    logits = model(token_ids)
    assert logits.shape == (2, 7, CONFIG["vocab_size"])
    assert torch.isfinite(logits).all()
    for block in model.blocks:
        assert type(block.attention) is attnkit.get_variant(name)
        assert block.attention(torch.randn(1, 3, CONFIG["emb_dim"])).shape == (1, 3, 12)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", NOT_CAUSAL)
def test_non_causal_variants_are_refused_naming_the_causal_ones(name):
    with pytest.raises(ValueError, match=f"attention '{name}' is not causal") as error:
        GPTModel({**CONFIG, "attention": name})
    assert ", ".join(CAUSAL) in str(error.value)


def test_the_config_maps_onto_the_attention_arguments():
    model = GPTModel({**CONFIG, "attention": "multihead", "drop_rate": 0.2, "qkv_bias": True})
    attention = model.blocks[0].attention
    assert (attention.d_in, attention.d_out, attention.context_length) == (12, 12, 16)
    assert attention.num_heads == 3
    assert attention.dropout.p == 0.2
    assert attention.W_query.bias is not None


def test_a_variant_that_widens_its_output_gets_a_narrower_d_out():
    attention = GPTModel({**CONFIG, "attention": "multihead_wrapper"}).blocks[0].attention
    assert (attention.num_heads, attention.d_out, attention.output_dim) == (3, 4, 12)


def test_a_width_no_d_out_can_produce_is_refused():
    with pytest.raises(ValueError, match="width 60, but the residual stream is emb_dim=12 wide"):
        GPTModel({**CONFIG, "attention": "multihead_wrapper", "n_heads": 5})


def test_attention_options_reach_the_attention():
    model = GPTModel({**CONFIG, "attention_options": {"kernel": "explicit"}})
    assert model.blocks[0].attention.kernel.name == "explicit"


def test_a_misspelled_attention_option_is_refused():
    options = {"implementaton": "explicit"}
    with pytest.raises(TypeError, match="no registered variant accepts 'implementaton'"):
        GPTModel({**CONFIG, "attention_options": options})


def test_attention_options_may_not_override_what_the_model_derives():
    with pytest.raises(ValueError, match="may not set 'd_out'; the model sets it from 'emb_dim'"):
        GPTModel({**CONFIG, "attention_options": {"d_out": 6}})


# What today's LLMs change about attention, as model configs: each a few keys, no code.
MODERN = {
    "llama": {
        "attention": "gqa",
        "num_kv_heads": 1,
        "rope_base": 500_000.0,
        "position_embedding": False,
    },
    "gemma3": {
        "n_layers": 6,
        "attention": "gqa",
        "num_kv_heads": 1,
        "qk_norm": True,
        "softcap": 30.0,
        "rope_base": 10_000.0,
        "position_embedding": False,
        # Five sliding-window layers to one global layer, with its own RoPE base.
        "layer_pattern": [{"window": 4}] * 5 + [{"window": None, "rope_base": 1_000_000.0}],
    },
    "alibi_sinks": {"alibi": True, "sinks": True, "position_embedding": False},
    "mla": {"attention": "mla", "kv_latent_dim": 6},
    "hybrid": {"layer_pattern": [{"attention": "mla"}, {"attention": "gqa", "window": 3}]},
}


def test_the_optional_keys_reach_the_attention():
    config = {**CONFIG, "attention": "gqa", "rope_base": 500_000, "qk_norm": True}
    config.update({"softcap": 30.0, "window": 4, "sinks": True})
    attention = GPTModel(config).blocks[0].attention
    assert attention.num_kv_heads == 1
    options = attention.options
    assert (options.rope_base, options.softcap, options.window) == (500_000.0, 30.0, 4)
    assert options.q_norm is not None and options.sinks.shape == (3,)
    alibi = GPTModel({**CONFIG, "alibi": True}).blocks[0].attention
    assert alibi.options.alibi_slopes is not None and alibi.num_kv_heads == 3
    assert GPTModel({**CONFIG, "attention": "mla"}).blocks[0].attention.kv_latent_dim == 4


def test_a_variant_is_built_without_the_sizes_it_does_not_take():
    # create_from_config's rule: dropped, since some registered variant takes them.
    model = GPTModel({**CONFIG, "attention": "causal", "num_kv_heads": 1, "kv_latent_dim": 4})
    assert type(model.blocks[0].attention).__name__ == "CausalAttention"


@pytest.mark.parametrize("option", [{"rope_base": 10_000.0}, {"window": 4}, {"alibi": True}])
def test_an_option_that_changes_the_attention_is_never_dropped_silently(option):
    [(key, value)] = option.items()
    with pytest.raises(ValueError, match=rf"sets {key}={value!r}, but attention 'mla' does not"):
        GPTModel({**CONFIG, "attention": "mla", **option})


def test_an_option_may_also_come_from_attention_options_but_not_twice():
    model = GPTModel({**CONFIG, "attention_options": {"window": 4}})
    assert model.blocks[0].attention.options.window == 4
    with pytest.raises(ValueError, match="'window' is set both as a config key and in attention"):
        GPTModel({**CONFIG, "window": 4, "attention_options": {"window": 4}})


def test_a_layer_pattern_repeats_over_the_layers():
    # Gemma 3 in one line: five sliding-window layers to one global layer, repeated.
    pattern = [{"window": 4}] * 5 + [{}]
    model = GPTModel({**CONFIG, "n_layers": 8, "layer_pattern": pattern})
    windows = [block.attention.options.window for block in model.blocks]
    assert windows == [4, 4, 4, 4, 4, None, 4, 4]
    assert model.config["layer_pattern"] == pattern and model.config["layer_pattern"] is not pattern


def test_a_layer_entry_overrides_the_config_and_merges_its_options():
    config = {**CONFIG, "n_layers": 3, "window": 4, "attention_options": {"kernel": "explicit"}}
    config["layer_pattern"] = [{}, {"window": None, "n_heads": 2, "qkv_bias": True}]
    config["layer_pattern"] += [
        {"attention": "mla", "window": None, "attention_options": {"kernel": "sdpa"}}
    ]
    first, second, third = (block.attention for block in GPTModel(config).blocks[:3])
    assert (first.options.window, first.num_heads, first.kernel.name) == (4, 3, "explicit")
    assert (second.options.window, second.num_heads, second.kernel.name) == (None, 2, "explicit")
    assert second.W_query.bias is not None
    assert (type(third).name, third.kernel.name) == ("mla", "sdpa")


@pytest.mark.parametrize(
    ("pattern", "error", "message"),
    [
        ({"window": 4}, TypeError, "layer_pattern must be a list of dicts"),
        ([], ValueError, r"from 1 to n_layers \(2\) entries, got 0"),
        ([{}, {}, {}], ValueError, r"from 1 to n_layers \(2\) entries, got 3"),
        ([{}, 4], TypeError, r"layer_pattern\[1\] must be a dict, got int"),
        ([{"windw": 4}], ValueError, r"\[0\] has unknown key 'windw' \(did you mean 'window'\?\)"),
        ([{"emb_dim": 6}], ValueError, "may not set 'emb_dim', which is the same for every layer"),
        ([{"n_heads": 0}], ValueError, r"\[0\]: n_heads must be a positive integer, got 0"),
        ([{"qkv_bias": 1}], TypeError, r"\[0\]: qkv_bias must be a bool, got 1"),
        ([{"attention_options": {"d_in": 3}}], ValueError, "may not set 'd_in'"),
        ([{"attention": "self_attention"}], ValueError, "'self_attention' is not causal"),
    ],
)
def test_layer_pattern_errors_name_the_entry(pattern, error, message):
    with pytest.raises(error, match=message):
        GPTModel({**CONFIG, "layer_pattern": pattern})


def test_the_position_embedding_can_be_left_to_the_attention():
    assert GPTModel(CONFIG).pos_emb.weight.shape == (16, 12)  # the default: GPT-2's
    model = GPTModel({**CONFIG, "rope_base": 10_000, "position_embedding": False})
    assert model.pos_emb is None
    assert not any(name.startswith("pos_emb") for name in model.state_dict())
    logits = model(torch.randint(0, CONFIG["vocab_size"], (2, 7)))
    assert logits.shape == (2, 7, CONFIG["vocab_size"]) and torch.isfinite(logits).all()
    with pytest.raises(TypeError, match="position_embedding must be a bool, got 'no'"):
        GPTModel({**CONFIG, "position_embedding": "no"})


def test_positions_reach_the_attention_without_a_position_embedding():
    # With RoPE and no position embedding, only the attention knows the order of tokens.
    torch.manual_seed(0)
    model = GPTModel({**CONFIG, **MODERN["llama"]}).eval()
    tokens = torch.tensor([[1, 2, 3, 4]])
    assert not torch.allclose(model(tokens)[0, -1], model(tokens.flip(1))[0, -1])


def assert_cached_decoding_equals_the_full_pass(config):
    """A prompt of 5 tokens, then one token at a time through the caches, against one pass
    over all 16 tokens, in float64; returns the model, its filled caches and the tokens."""
    torch.manual_seed(0)
    model = GPTModel(config).double().eval()
    token_ids = torch.randint(0, CONFIG["vocab_size"], (2, 16))
    caches = model.new_kv_caches()
    with torch.no_grad():
        bounds = [0, 5, *range(6, 17)]
        chunks = [model(token_ids[:, a:b], caches=caches) for a, b in itertools.pairwise(bounds)]
        full = model(token_ids)
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, **TOLERANCES[torch.float64])
    return model, caches, token_ids


@pytest.mark.parametrize("modern", MODERN)
def test_modern_configs_decode_with_a_cache_as_the_full_pass(modern):
    assert_cached_decoding_equals_the_full_pass({**CONFIG, **MODERN[modern]})


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"n_head": 3}, ValueError, r"unknown config key 'n_head' \(did you mean 'n_heads'\?\)"),
        ({"emb_dim": 0}, ValueError, "emb_dim must be a positive integer, got 0"),
        ({"drop_rate": 1.0}, ValueError, r"drop_rate: dropout must be in \[0, 1\), got 1.0"),
        ({"qkv_bias": 1}, TypeError, "qkv_bias must be a bool, got 1"),
        ({"attention_options": 3}, TypeError, "attention_options must be a dict, got int"),
        ({"attention": "casual"}, attnkit.UnknownVariantError, "did you mean 'causal'"),
        ({"num_kv_head": 1}, ValueError, r"unknown config key 'num_kv_head' \(did you mean"),
        ({"attention": "gqa", "num_kv_heads": 2}, ValueError, r"num_kv_heads \(2\) must divide"),
    ],
)
def test_config_errors_name_the_key(change, error, message):
    with pytest.raises(error, match=message):
        GPTModel({**CONFIG, **change})


def test_missing_keys_are_named():
    config = {key: value for key, value in CONFIG.items() if key != "vocab_size"}
    with pytest.raises(ValueError, match="config is missing 'vocab_size'"):
        GPTModel(config)


def test_forward_errors_name_the_problem():
    model = GPTModel(CONFIG)
    with pytest.raises(TypeError, match="expected integer token ids, got torch.float32"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"shape \(batch, tokens\).*got \(3,\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"token id 40 is out of range; ids must be in \[0, 40\)"):
        model(torch.tensor([[1, 40]]))
    with pytest.raises(ValueError, match="17 tokens were given, but context_length is 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"one KVCache per block \(2\), got 1"):
        model(torch.zeros(1, 3, dtype=torch.long), caches=[attnkit.KVCache()])


@pytest.mark.parametrize("name", CACHED)
def test_cached_forward_equals_the_full_sequence(name):
    model, caches, token_ids = assert_cached_decoding_equals_the_full_pass(
        {**CONFIG, "attention": name}
    )
    with pytest.raises(ValueError, match="the caches hold 16 tokens and 1 tokens were given"):
        model(token_ids[:, :1], caches=caches)


def test_a_variant_without_a_cache_refuses_caches(uncached_variant):
    model = GPTModel({**CONFIG, "attention": uncached_variant})
    assert not model.supports_kv_cache
    with pytest.raises(TypeError, match="does not support a KV cache"):
        model.new_kv_caches()


def test_training_lowers_the_loss():
    example = load_example()
    text = example.load_text()
    tokenizer = example.CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text))
    torch.manual_seed(0)
    model = GPTModel({**CONFIG, "vocab_size": tokenizer.vocab_size, "emb_dim": 24})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = example.train(
        model, optimizer, data, steps=30, batch_size=8, context_length=16, seed=0
    )
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5, losses


def test_the_example_runs_end_to_end(tmp_path):
    example = load_example()
    arguments = ["--steps", "3", "--eval-every", "2", "--emb-dim", "12", "--n-layers", "1"]
    arguments += ["--context-length", "16", "--batch-size", "4", "--sample-tokens", "20"]
    arguments += ["--attention", "causal", "--device", "cpu", "--output", str(tmp_path)]
    results = example.main(arguments)
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert len(results["losses"]) == 3
    assert [step for step, _ in results["validation"]] == [2, 3]
    assert results["sample"].startswith("I HAD always thought")
    assert len(results["sample"]) == len("I HAD always thought") + 20


def test_the_shipped_text_is_the_whole_story():
    example = load_example()
    text = example.load_text()
    assert text.startswith("I HAD always thought Jack Gisburn")
    assert text.endswith("there's no exterminating our kind of art.\"")
    assert len(text) == 20479


def test_one_cache_shared_by_every_block_is_refused():
    model = GPTModel({**CONFIG, "attention": "multihead"})
    shared = attnkit.KVCache()
    with pytest.raises(ValueError, match="same KVCache") as error:
        model(torch.tensor([[1, 2, 3]]), caches=[shared] * 2)
    assert "caches[0] and caches[1] are the same KVCache object" in str(error.value)
    assert "model.new_kv_caches()" in str(error.value)
    assert shared.length == 0


def test_caches_out_of_step_are_refused():
    model = GPTModel({**CONFIG, "attention": "multihead"})
    caches = model.new_kv_caches()
    model(torch.tensor([[1, 2, 3]]), caches=caches)
    lagging = model.new_kv_caches()
    with pytest.raises(ValueError, match=r"out of step \(tokens held per block: \[3, 0\]\)"):
        model(torch.tensor([[4]]), caches=[caches[0], lagging[1]])
    with pytest.raises(TypeError, match=r"caches\[1\] is a list"):
        model(torch.tensor([[4]]), caches=[caches[0], []])


def linear_weights(model):
    return [module.weight for module in model.modules() if isinstance(module, torch.nn.Linear)]


def is_input_major(weight):
    return weight.stride() == (1, weight.shape[0])


@pytest.mark.parametrize("tied", [False, True], ids=["separate head", "tied head"])
def test_eval_mode_stores_linear_weights_input_major_and_train_mode_restores_them(tied):
    model = GPTModel({**CONFIG, "tie_embeddings": tied})
    weights = linear_weights(model)
    before = [weight.detach().clone() for weight in weights]
    assert all(weight.is_contiguous() for weight in weights)  # nn.Linear's layout to train
    model.eval()
    assert all(is_input_major(weight) for weight in weights)  # GPT-2's Conv1D layout
    assert [id(w) for w in linear_weights(model)] == [id(w) for w in weights]  # same Parameters
    assert (model.out_head.weight is model.tok_emb.weight) == tied
    assert all(torch.equal(w, b) for w, b in zip(weights, before, strict=True))
    assert model.state_dict()["out_head.weight"].shape == (CONFIG["vocab_size"], CONFIG["emb_dim"])
    model.train()
    assert all(weight.is_contiguous() for weight in weights)
    assert all(torch.equal(w, b) for w, b in zip(weights, before, strict=True))


def test_the_layout_changes_no_number_and_survives_loading_and_conversion():
    torch.manual_seed(0)
    model = GPTModel(CONFIG)
    token_ids = torch.randint(0, CONFIG["vocab_size"], (2, 6))
    expected = model(token_ids)
    reloaded = GPTModel(CONFIG).eval()
    reloaded.load_state_dict(model.state_dict())
    assert all(is_input_major(w) for w in linear_weights(reloaded))
    torch.testing.assert_close(reloaded(token_ids), expected, atol=1e-6, rtol=1e-6)
    as_double = reloaded.double()
    assert all(is_input_major(w) for w in linear_weights(as_double))
    torch.testing.assert_close(as_double(token_ids).float(), expected, atol=1e-5, rtol=1e-5)


def test_switching_modes_under_inference_mode_leaves_trainable_weights():
    model = GPTModel(CONFIG)
    with torch.inference_mode():
        model.eval()
        model.train()
    assert not any(weight.is_inference() for weight in model.parameters())
    token_ids = torch.randint(0, CONFIG["vocab_size"], (2, 6))
    model(token_ids).sum().backward()  # an inference tensor could not be saved for backward
    assert model.out_head.weight.grad is not None


def test_an_optimizer_keeps_training_across_an_evaluation():
    torch.manual_seed(0)
    model = GPTModel(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    token_ids = torch.randint(0, CONFIG["vocab_size"], (2, 7))
    inputs, targets = token_ids[:, :-1], token_ids[:, 1:]
    losses = []
    for _ in range(3):
        loss = model.loss(inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            losses.append(model.eval().loss(inputs, targets).item())
        model.train()
    assert losses[0] > losses[1] > losses[2]
