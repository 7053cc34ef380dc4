"""generate: cached and uncached greedy generation agree token for token, even past the context."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.models import GPTModel, causal_variants, generate, next_token
from tests.test_models import MODERN

CONFIG = {
    "vocab_size": 30,
    "context_length": 16,
    "emb_dim": 12,
    "n_heads": 3,
    "n_layers": 2,
    "drop_rate": 0.1,
    # Sizes that only some variants take: gqa its key-value heads, mla its latent.
    # Each variant is built with the keys it accepts.
    "num_kv_heads": 1,
    "kv_latent_dim": 4,
}
CACHED = [name for name in causal_variants() if attnkit.get_variant(name).supports_kv_cache]
UNCACHED = [name for name in causal_variants() if name not in CACHED]


pytestmark = pytest.mark.usefixtures("one_thread")


def model_with(name: str) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel({**CONFIG, "attention": name})


class TokenCounter:
    """Counts the tokens each forward pass of a model runs."""

    def __init__(self, model: GPTModel) -> None:
        self.passes: list[int] = []
        model.register_forward_pre_hook(self.count)

    def count(self, module, args):
        self.passes.append(args[0].shape[1])


@pytest.mark.parametrize("prompt_length", [1, 5, 20])
@pytest.mark.parametrize("name", CACHED)
def test_greedy_cached_equals_uncached_token_for_token(name, prompt_length):
    model = model_with(name)
    prompt = torch.randint(0, CONFIG["vocab_size"], (3, prompt_length))
    # 30 new tokens run past context_length (16): the cached path slides its window too.
    cached = generate(model, prompt, 30, use_cache=True)
    uncached = generate(model, prompt, 30, use_cache=False)
    assert cached.shape == (3, prompt_length + 30)
    assert torch.equal(cached[:, :prompt_length], prompt)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("modern", MODERN)
def test_modern_configs_generate_the_same_tokens_with_and_without_a_cache(modern):
    torch.manual_seed(0)
    model = GPTModel({**CONFIG, **MODERN[modern]})
    prompt = torch.randint(0, CONFIG["vocab_size"], (2, 5))
    cached = generate(model, prompt, 30, use_cache=True)  # past the context, and the windows
    assert torch.equal(cached, generate(model, prompt, 30, use_cache=False))


def test_a_sliding_window_cache_stays_at_the_window_while_positions_go_on():
    torch.manual_seed(0)
    window = 4
    config = {**CONFIG, "attention": "gqa", "rope_base": 10_000.0, "position_embedding": False}
    model = GPTModel({**config, "window": window}).eval()
    token_ids = torch.randint(0, CONFIG["vocab_size"], (1, 16))
    caches = model.new_kv_caches()
    with torch.no_grad():
        full = model(token_ids)
        steps = [model(token_ids[:, :2], caches=caches)]
        for t in range(2, 16):
            steps.append(model(token_ids[:, t : t + 1], caches=caches))
            assert [(c.length, c.held) for c in caches] == [(t + 1, min(t + 1, window))] * 2
    # Each step saw its token at position cache.length, not at its place in the ring buffer.
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    generated = generate(model, token_ids[:, :3], 13, use_cache=True)
    assert torch.equal(generated, generate(model, token_ids[:, :3], 13, use_cache=False))


@pytest.mark.parametrize("name", CACHED)
def test_the_cache_runs_each_token_once_until_the_context_is_full(name):
    model = model_with(name)
    counter = TokenCounter(model)
    generate(model, torch.tensor([[1, 2, 3, 4]]), 12, use_cache=True)
    assert counter.passes == [4] + [1] * 11  # prefill, then one token per step: 15 tokens
    counter.passes.clear()
    generate(model, torch.tensor([[1, 2, 3, 4]]), 14, use_cache=True)
    assert counter.passes == [4] + [1] * 12 + [16]  # full at 16 tokens: recompute the window
    counter.passes.clear()
    generate(model, torch.tensor([[1, 2, 3, 4]]), 12, use_cache=False)
    assert counter.passes == list(range(4, 16))


@pytest.mark.parametrize("name", [*UNCACHED, "causal_without_cache"])
def test_causal_variants_without_a_cache_still_generate(name, uncached_variant):
    model = model_with(name)
    assert not model.supports_kv_cache
    counter = TokenCounter(model)
    prompt = torch.tensor([[1, 2, 3]])
    generated = generate(model, prompt, 20)
    assert generated.shape == (1, 23)
    assert counter.passes == [*range(3, 17), *[16] * 6]  # the whole window every step
    assert torch.equal(generated, generate(model, prompt, 20, use_cache=False))


def test_use_cache_true_requires_the_capability(uncached_variant):
    model = model_with(uncached_variant)
    with pytest.raises(TypeError, match="'causal_without_cache' does not support a KV cache"):
        generate(model, torch.tensor([[1, 2]]), 3, use_cache=True)


def test_an_unbatched_prompt_gives_an_unbatched_result():
    model = model_with("causal")
    generated = generate(model, torch.tensor([4, 5, 6]), 4)
    assert generated.shape == (7,)
    assert torch.equal(generated, generate(model, torch.tensor([[4, 5, 6]]), 4)[0])


def test_generation_runs_in_eval_mode_and_restores_the_mode():
    model = model_with("multihead").train()
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, 10)
    assert model.training
    assert torch.equal(first, generate(model, prompt, 10))  # no dropout: deterministic
    assert not generate(model.eval(), prompt, 1).requires_grad
    assert not model.training


def test_zero_new_tokens_returns_the_prompt():
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(generate(model_with("causal"), prompt, 0), prompt)


def test_sampling_is_reproducible_with_a_generator():
    model = model_with("multihead")
    prompt = torch.tensor([[1, 2, 3]])

    def sample(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return generate(model, prompt, 20, temperature=1.0, generator=generator)

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))
    greedy = generate(model, prompt, 20)
    assert torch.equal(generate(model, prompt, 20, temperature=1.0, top_k=1), greedy)


def test_next_token_keeps_only_the_top_k():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    generator = torch.Generator().manual_seed(0)
    picks = {
        next_token(logits, temperature=10.0, top_k=2, generator=generator).item()
        for _ in range(200)
    }
    assert picks == {1, 3}
    assert next_token(logits).item() == 1


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"max_new_tokens": -1}, ValueError, "max_new_tokens must be 0 or more, got -1"),
        ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens must be an int, got 2.5"),
        ({"max_new_tokens": True}, TypeError, "max_new_tokens must be an int, got True"),
        ({"temperature": -0.5}, ValueError, "temperature must be a finite number >= 0, got -0.5"),
        ({"temperature": float("nan")}, ValueError, "finite number >= 0, got nan"),
        ({"temperature": "0.7"}, TypeError, "temperature must be a number, got '0.7'"),
        ({"top_k": 0}, ValueError, r"top_k must be an int from 1 to vocab_size \(30\), got 0"),
        ({"top_k": 31}, ValueError, r"top_k must be an int from 1 to vocab_size \(30\), got 31"),
        ({"top_k": 2.0}, TypeError, r"top_k must be an int or None, got 2.0"),
        ({"use_cache": "no"}, TypeError, "use_cache must be True, False or None, got 'no'"),
        ({"generator": 42}, TypeError, "generator must be a torch.Generator or None, got int"),
    ],
)
def test_argument_errors_name_the_argument(arguments, error, message):
    arguments = {"max_new_tokens": 3, **arguments}
    with pytest.raises(error, match=message):
        generate(model_with("causal"), torch.tensor([[1]]), **arguments)


def test_the_benchmark_runs(capsys):
    path = Path(__file__).parent.parent / "benchmarks" / "generation.py"
    spec = importlib.util.spec_from_file_location("generation_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    arguments = ["--new-tokens", "6", "--prompt-tokens", "3", "--repeats", "1", "--emb-dim", "8"]
    arguments += ["--n-heads", "2", "--n-layers", "1", "--context-length", "16", "--threads", "1"]
    assert benchmark.main(arguments) > 0
    assert "speed-up:" in capsys.readouterr().out
