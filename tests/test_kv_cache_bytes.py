"""kv_cache_bytes: the book's KV-cache tables, and the bytes a real cached generation holds.

The figures come from the bonus chapters of the reference book, Sebastian
Raschka's "Build a Large Language Model (From Scratch)", repository
rasbt/LLMs-from-scratch:

- ch04/04_gqa/README.md, "GQA Memory Savings", the output of memory_estimator.py
  for 32 layers, 4,096 wide, 32 heads, 32,768 tokens, batch 1, bf16:
  ``MHA total KV cache : 17.18 GB``, ``GQA total KV cache : 4.29 GB`` (8 KV heads),
  ``Ratio (MHA / GQA) : 4.00x``.
- ch04/06_swa/README.md, "Sliding Window Attention (SWA) Memory Savings", the
  output of memory_estimator_swa.py for the same model with a window of 1,024 in
  a 5:1 ratio of sliding-window to full layers ("27 SWA, 5 FULL"):
  ``MHA KV total : 17.18 GB``, ``GQA KV total : 4.29 GB``,
  ``MHA + SWA (Ratio: 5:1) : 3.14 GB``, and ``0.78 GB`` for GQA with SWA (the
  README labels that row "MHA + GQA"; memory_estimator_swa.py prints it as
  "GQA + SWA" from ``total_mixed_gqa``).
- ch04/05_mla/README.md, "MLA Memory Savings", the output of
  memory_estimator_mla.py for 48 layers, 2,048 wide, 24 heads, 8,192 tokens,
  batch 1, bf16, 6 KV heads for GQA and a latent of 1,024:
  ``MHA total KV cache : 3.25 GB``, ``GQA total KV cache : 0.81 GB``,
  ``MLA total KV cache : 0.81 GB``, ``Ratio (MHA / MLA) : 4.03x``.

The scripts divide by ``1000 ** 3`` for GB and print two decimals; the tests do
the same. They compute the head width as ``math.ceil(emb_dim / n_heads)``: 128
for the first two tables, but 86 for the MLA table's 2,048 / 24, so its MHA and
GQA rows describe 24 heads of width 86, a 2,064-wide attention (a 2,048-wide one
cannot have 24 equal heads, and attnkit refuses it). Those two rows are checked
with ``emb_dim = 2064``; the MLA row, which depends only on the latent, with 2,048.
"""

from __future__ import annotations

import math

import pytest
import torch

import attnkit
from attnkit.models import GPTModel, causal_variants, kv_cache_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

GB = 1000**3  # the book's unit: bytes_convert / convert_bytes divide by 1000 ** 3

BOOK_7B = {"vocab_size": 50_257, "context_length": 32_768, "emb_dim": 4_096}
BOOK_7B |= {"n_heads": 32, "n_layers": 32}
GQA_8 = {"attention": "gqa", "num_kv_heads": 8}  # --n_kv_groups 4: 32 / 4 = 8 KV heads
SWA_5_TO_1 = {"layer_pattern": [{"window": 1_024}] * 5 + [{}]}  # --swa_ratio "5:1"
BOOK_MLA = {"vocab_size": 50_257, "context_length": 8_192, "emb_dim": 2_048}
BOOK_MLA |= {"n_heads": 24, "n_layers": 48}
HEADS_OF_86 = {"emb_dim": 24 * math.ceil(2_048 / 24)}  # the script's head_dim, 86

FIGURES = {
    # id: (config, tokens, GB as printed, where the book prints it)
    "gqa-readme-mha": (BOOK_7B, 32_768, 17.18, "04_gqa/README.md: MHA total KV cache"),
    "gqa-readme-gqa": ({**BOOK_7B, **GQA_8}, 32_768, 4.29, "04_gqa/README.md: GQA total"),
    "swa-readme-mha": (BOOK_7B, 32_768, 17.18, "06_swa/README.md: MHA KV total"),
    "swa-readme-gqa": ({**BOOK_7B, **GQA_8}, 32_768, 4.29, "06_swa/README.md: GQA KV total"),
    "swa-readme-mha-swa": (
        {**BOOK_7B, **SWA_5_TO_1},
        32_768,
        3.14,
        "06_swa/README.md: MHA + SWA (Ratio: 5:1)",
    ),
    "swa-readme-gqa-swa": (
        {**BOOK_7B, **GQA_8, **SWA_5_TO_1},
        32_768,
        0.78,
        "06_swa/README.md: 'MHA + GQA (Ratio: 5:1)', the script's GQA + SWA",
    ),
    "mla-readme-mha": ({**BOOK_MLA, **HEADS_OF_86}, 8_192, 3.25, "05_mla/README.md: MHA total"),
    "mla-readme-gqa": (
        {**BOOK_MLA, **HEADS_OF_86, "attention": "gqa", "num_kv_heads": 6},
        8_192,
        0.81,
        "05_mla/README.md: GQA total KV cache (--n_kv_groups 4: 24 / 4 = 6 KV heads)",
    ),
    "mla-readme-mla": (
        {**BOOK_MLA, "attention": "mla", "kv_latent_dim": 1_024},
        8_192,
        0.81,
        "05_mla/README.md: MLA total KV cache (--latent_dim 1024)",
    ),
}


def book_formula(tokens, head_dim, kv_heads, layers, batch=1, bytes_per_element=2):
    """The book's formula, as its memory_estimator scripts compute it (kv_bytes_per_layer)."""
    return batch * tokens * head_dim * kv_heads * 2 * bytes_per_element * layers


@pytest.mark.parametrize("figure", FIGURES)
def test_the_books_figures(figure):
    config, tokens, printed, source = FIGURES[figure]
    estimate = kv_cache_bytes(config, tokens, batch=1, dtype=torch.bfloat16)
    assert f"{estimate / GB:,.2f}" == f"{printed:.2f}", source


def test_the_books_figures_to_the_byte():
    # The same figures before rounding, from the scripts' own formulas.
    assert kv_cache_bytes(BOOK_7B, 32_768) == book_formula(32_768, 128, 32, 32) == 17_179_869_184
    assert kv_cache_bytes({**BOOK_7B, **GQA_8}, 32_768) == book_formula(32_768, 128, 8, 32)
    # 06_swa: 27 layers hold the window, 5 the whole context (distribute_layers(32, 5, 1)).
    mixed = 27 * book_formula(1_024, 128, 32, 1) + 5 * book_formula(32_768, 128, 32, 1)
    assert kv_cache_bytes({**BOOK_7B, **SWA_5_TO_1}, 32_768) == mixed == 3_137_339_392
    assert kv_cache_bytes({**BOOK_7B, **GQA_8, **SWA_5_TO_1}, 32_768) == mixed // 4
    # 05_mla: mla_bytes_total = batch * tokens * layers * latent_dim * bytes.
    mla = {**BOOK_MLA, "attention": "mla", "kv_latent_dim": 1_024}
    assert kv_cache_bytes(mla, 8_192) == 8_192 * 48 * 1_024 * 2 == 805_306_368
    assert kv_cache_bytes({**BOOK_MLA, **HEADS_OF_86}, 8_192) == book_formula(8_192, 86, 24, 48)


def test_the_books_ratios():
    mha = kv_cache_bytes(BOOK_7B, 32_768)
    assert f"{mha / kv_cache_bytes({**BOOK_7B, **GQA_8}, 32_768):.2f}x" == "4.00x"  # 04_gqa
    mla = {**BOOK_MLA, "attention": "mla", "kv_latent_dim": 1_024}
    ratio = kv_cache_bytes({**BOOK_MLA, **HEADS_OF_86}, 8_192) / kv_cache_bytes(mla, 8_192)
    assert f"{ratio:.2f}x" == "4.03x"  # 05_mla: Ratio (MHA / MLA)


def test_the_5_to_1_pattern_gives_the_books_27_window_and_5_full_layers():
    # memory_estimator_swa.py: "Distributed layers : 27 SWA, 5 FULL" for 32 layers at 5:1.
    model = GPTModel({"vocab_size": 4, "context_length": 8, "emb_dim": 4, "n_heads": 1,
                      "n_layers": 32, "layer_pattern": [{"window": 2}] * 5 + [{}]})  # fmt: skip
    windows = [block.attention.options.window for block in model.blocks]
    assert (windows.count(2), windows.count(None)) == (27, 5)


def test_sizing_builds_nothing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("kv_cache_bytes built a module")

    monkeypatch.setattr(torch.nn.Linear, "__init__", refuse)
    monkeypatch.setattr(torch.nn.Embedding, "__init__", refuse)
    for config, tokens, _, _ in FIGURES.values():
        assert kv_cache_bytes(config, tokens) > 0


def test_batch_and_dtype_scale_the_bytes():
    one = kv_cache_bytes(BOOK_7B, 1_000)
    assert kv_cache_bytes(BOOK_7B, 1_000, batch=3) == 3 * one
    assert kv_cache_bytes(BOOK_7B, 1_000, dtype=torch.float32) == 2 * one
    assert kv_cache_bytes(BOOK_7B, 1_000, dtype=torch.float8_e4m3fn) * 2 == one


# --- Against a real cache -------------------------------------------------------------------

SMALL = {"vocab_size": 50, "context_length": 24, "emb_dim": 16, "n_heads": 4, "n_layers": 3}
WINDOW = 5
REAL = {
    "multihead": {},
    "gqa": {"attention": "gqa", "num_kv_heads": 2},
    "mqa": {"attention": "gqa", "num_kv_heads": 1},
    "mla": {"attention": "mla", "kv_latent_dim": 6},
    "sliding_window": {"window": WINDOW, "rope_base": 10_000.0, "position_embedding": False},
    "gemma_like": {
        "attention": "gqa",
        "num_kv_heads": 1,
        "layer_pattern": [{"window": WINDOW}] * 2 + [{}],
    },
    "hybrid": {"layer_pattern": [{"attention": "mla", "kv_latent_dim": 6}, {"window": WINDOW}]},
}
# Every built-in causal variant with its defaults, too.
DECLARED = [
    name
    for name in causal_variants()
    if (attnkit.get_variant(name).plugin or "").startswith("attnkit.")
    and attnkit.get_variant(name).supports_kv_cache
]
REAL |= {
    f"builtin-{name}": {"attention": name, "num_kv_heads": 2, "kv_latent_dim": 6}
    for name in DECLARED
}


def held_bytes(config, dtype, batch, steps):
    """Generate ``steps`` tokens with a cache; yield (tokens seen, bytes the caches hold)."""
    torch.manual_seed(0)
    model = GPTModel({**SMALL, **config}).to(dtype).eval()
    caches = model.new_kv_caches()
    token_ids = torch.randint(0, SMALL["vocab_size"], (batch, 3))
    with torch.no_grad():
        logits = model(token_ids, caches=caches)  # a prompt of 3 tokens
        for _ in range(steps):
            yield caches[0].length, sum(cache.nbytes() for cache in caches)
            new = logits[:, -1:].argmax(-1)
            logits = model(new, caches=caches)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("real", REAL)
def test_the_estimate_is_what_a_cached_generation_holds(real, dtype):
    config = REAL[real]
    seen = []
    for tokens, held in held_bytes(config, dtype, batch=2, steps=SMALL["context_length"] - 3):
        assert held == kv_cache_bytes({**SMALL, **config}, tokens, batch=2, dtype=dtype), tokens
        seen.append(tokens)
    assert seen == list(range(3, SMALL["context_length"]))


def test_a_sliding_window_cache_stays_flat_past_the_window():
    config = {**SMALL, **REAL["sliding_window"]}
    sizes = {
        tokens: held for tokens, held in held_bytes(REAL["sliding_window"], torch.float32, 1, 20)
    }
    assert len({sizes[t] for t in sizes if t >= WINDOW}) == 1  # flat from the window on
    assert sizes[WINDOW - 1] < sizes[WINDOW]
    assert kv_cache_bytes(config, WINDOW, dtype=torch.float32) == sizes[WINDOW]
    assert kv_cache_bytes(config, 24, dtype=torch.float32) == sizes[WINDOW]
    # 3 layers x 2 (keys and values) x 16 wide x 5 tokens x 4 bytes.
    assert sizes[WINDOW] == 3 * 2 * 16 * WINDOW * 4
    full = kv_cache_bytes(SMALL, 24, dtype=torch.float32)
    assert full == 3 * 2 * 16 * 24 * 4


# --- Errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "arguments", "error", "message"),
    [
        ({}, {"context_length": 25}, ValueError, r"context_length \(25\) exceeds the config's"),
        ({}, {"context_length": 0}, ValueError, "context_length must be a positive integer"),
        ({}, {"batch": 0}, ValueError, "batch must be a positive integer, got 0"),
        ({}, {"dtype": "bf16"}, TypeError, "dtype must be a torch.dtype, got 'bf16'"),
        ({"n_head": 4}, {}, ValueError, r"unknown config key 'n_head' \(did you mean 'n_heads'"),
        ({"attention": "gqa"}, {}, TypeError, "missing required argument 'num_kv_heads'"),
        (
            {"attention_options": {"windw": 4}},
            {},
            TypeError,
            r"no registered variant accepts 'windw' \(did you mean 'window'\?\)",
        ),
        ({"attention": "self_attention"}, {}, ValueError, "'self_attention' is not causal"),
        ({"attention": "casual"}, {}, attnkit.UnknownVariantError, "did you mean 'causal'"),
    ],
)
def test_errors_name_the_problem(change, arguments, error, message):
    arguments = {"context_length": 10, **arguments}
    with pytest.raises(error, match=message):
        kv_cache_bytes({**SMALL, **change}, **arguments)


def test_a_variant_without_a_cache_is_refused(uncached_variant):
    with pytest.raises(TypeError, match="'causal_without_cache' \\(layer 0\\) has no KV cache"):
        kv_cache_bytes({**SMALL, "attention": uncached_variant}, 10)


def test_a_cached_variant_that_declares_no_size_is_refused(fresh_registry):
    class Undeclared(attnkit.get_variant("causal")):
        """Causal attention that leaves kv_cache_elements at the base class's None."""

        name = "undeclared"

        @classmethod
        def kv_cache_elements(cls, arguments, tokens):
            return None

    attnkit.register(Undeclared)
    config = {**SMALL, "layer_pattern": [{}, {"attention": "undeclared"}]}
    with pytest.raises(TypeError, match=r"'undeclared' \(layer 1\) declares no KV-cache size"):
        kv_cache_bytes(config, 10)
