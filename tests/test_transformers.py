"""attnkit kernels inside Hugging Face transformers models: tiny random configs, no Hub."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnkit  # noqa: E402
import attnkit.integrations.transformers as attnkit_hf  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

IMPLEMENTATIONS = ["attnkit_sdpa", "attnkit_explicit"]
PROMPTS = torch.tensor([[0, 0, 0, 3, 4, 5, 6], [5, 6, 7, 8, 9, 10, 11]])
PADDING = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])  # first row left-padded


@pytest.fixture(scope="module", autouse=True)
def registered():
    return attnkit_hf.register()


def llama():
    """Llama with grouped key-value heads: 4 query heads share 2 key-value heads."""
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def gpt2():
    config = transformers.GPT2Config(
        vocab_size=64, n_positions=64, n_embd=32, n_layer=2, n_head=4, pad_token_id=0
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


MODELS = {"llama": llama, "gpt2": gpt2}


def test_every_kernel_is_registered_under_a_hub_safe_name(registered):
    assert registered == [f"attnkit_{name}" for name in attnkit.list_kernels()]
    assert all("/" not in name for name in registered)
    assert attnkit_hf.register("sdpa") == ["attnkit_sdpa"]
    with pytest.raises(attnkit.UnknownKernelError, match="did you mean 'sdpa'"):
        attnkit_hf.register("spda")


def logits(model, implementation, **kwargs):
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        return model(PROMPTS, attention_mask=PADDING, **kwargs)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", MODELS)
def test_logits_equal_the_models_own_eager_attention_with_left_padding(family, implementation):
    model = MODELS[family]()
    expected = logits(model, "eager").logits
    found = logits(model, implementation).logits
    assert not found.isnan().any()
    real = PADDING.bool()
    torch.testing.assert_close(found[real], expected[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", MODELS)
def test_greedy_generation_gives_the_same_tokens(family, implementation):
    model = MODELS[family]()
    model.set_attn_implementation("eager")
    expected = model.generate(PROMPTS, attention_mask=PADDING, max_new_tokens=8, do_sample=False)
    model.set_attn_implementation(implementation)
    found = model.generate(PROMPTS, attention_mask=PADDING, max_new_tokens=8, do_sample=False)
    assert torch.equal(found, expected)


@pytest.mark.parametrize("implementation", ["attnkit_sdpa", "attnkit_explicit", "attnkit_chunked"])
@pytest.mark.parametrize("family", MODELS)
def test_output_attentions_returns_weights_without_switching_to_eager(family, implementation):
    model = MODELS[family]()
    attentions = logits(model, implementation, output_attentions=True).attentions
    expected = logits(model, "eager", output_attentions=True).attentions
    assert len(attentions) == 2
    for found, reference in zip(attentions, expected, strict=True):
        assert found.shape == (2, 4, 7, 7)
        real = PADDING.bool()
        sums = found.sum(-1)  # (batch, heads, queries)
        torch.testing.assert_close(sums.permute(0, 2, 1)[real], torch.ones(11, 4))
        assert (found[0][..., :3] == 0).all(), "padding keys must get no weight"
        torch.testing.assert_close(
            found.permute(0, 2, 1, 3)[real],
            reference.permute(0, 2, 1, 3)[real],
            atol=1e-5,
            rtol=1e-5,
        )


def test_a_third_party_kernel_runs_inside_a_transformers_model_by_name():
    assert attnkit.get_kernel("chunked").plugin == "window"  # the example plugin's kernel
    model = llama()
    expected = logits(model, "eager").logits
    found = logits(model, "attnkit_chunked").logits
    real = PADDING.bool()
    torch.testing.assert_close(found[real], expected[real], atol=1e-5, rtol=1e-5)


def test_without_its_mask_builder_a_custom_attention_silently_attends_to_padding():
    """The pitfall the mask registration avoids: transformers gives such a function no mask."""
    model = llama()
    expected = logits(model, "eager").logits
    transformers.AttentionInterface.register(
        "attention_alone", attnkit_hf.attention_function(attnkit.get_kernel("sdpa"))
    )
    alone = logits(model, "attention_alone").logits
    assert (alone[0, 3:] - expected[0, 3:]).abs().max() > 1e-3  # padding leaked in
    torch.testing.assert_close(alone[1], expected[1], atol=1e-5, rtol=1e-5)  # unpadded row fine
    torch.testing.assert_close(logits(model, "attnkit_sdpa").logits[1], expected[1])


def test_importing_attnkit_does_not_import_transformers():
    code = "import sys, attnkit; attnkit.list_kernels(); print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
