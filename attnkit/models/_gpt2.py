"""Weights both ways between `GPTModel` and Hugging Face transformers' ``GPT2LMHeadModel``.

The two are one architecture under different names and layouts:

| `GPTModel` | ``GPT2LMHeadModel`` | layout |
| --- | --- | --- |
| ``tok_emb``, ``pos_emb`` | ``transformer.wte``, ``transformer.wpe`` | the same |
| ``blocks[i].norm1``, ``norm2`` | ``transformer.h[i].ln_1``, ``ln_2`` | the same |
| ``blocks[i].attention.W_query``, ``W_key``, ``W_value`` | ``transformer.h[i].attn.c_attn`` | side by side in one ``Conv1D``, transposed |
| ``blocks[i].attention.out_proj`` | ``transformer.h[i].attn.c_proj`` | transposed |
| ``blocks[i].feed_forward[0]``, ``[2]`` | ``transformer.h[i].mlp.c_fc``, ``c_proj`` | transposed |
| ``final_norm`` | ``transformer.ln_f`` | the same |
| ``out_head`` | ``lm_head`` | the same; GPT-2 ties both to the token embedding |

transformers' ``Conv1D`` computes ``x @ W + b`` with ``W`` of shape ``(in, out)``,
where ``nn.Linear`` computes ``x @ W.T + b`` with ``W`` of shape ``(out, in)``. One
table (`_paired_tensors`) pairs every `GPTModel` tensor with a *view* of the
transformers tensor it corresponds to, so the same pairs copy in either direction.

transformers is imported here only inside the two functions, never when
`attnkit` or `attnkit.models` is imported.
"""  # noqa: E501

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from attnkit.models.gpt import GPTModel

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["from_transformers", "to_transformers"]

# GPT-2's activation, "gelu_new", is GELU's tanh approximation, which is what
# GPTModel's feed-forward computes (nn.GELU(approximate="tanh")); these names compute it too.
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# nn.LayerNorm's default, which GPTModel's norms use, and GPT2Config's default.
_LAYER_NORM_EPS = 1e-5
# GPT2Config keys that the weights and the GPTModel config decide.
_ARCHITECTURE = (
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "activation_function",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "layer_norm_epsilon",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "add_cross_attention",
    "tie_word_embeddings",
)
# GPT-2's tokenizer's <|endoftext|>, GPT2Config's default bos and eos token.
_GPT2_END_OF_TEXT = 50256


def _transformers(caller: str) -> Any:
    """The ``transformers`` module, or an ImportError that says how to install it."""
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            f"{caller} needs Hugging Face transformers, which is not installed: "
            f"pip install 'attnkit[transformers]'"
        ) from error
    return transformers


def from_transformers(gpt2_model: GPT2LMHeadModel, *, drop_rate: float | None = None) -> GPTModel:
    """The `GPTModel` equal to ``gpt2_model``; see `GPTModel.from_transformers`."""
    caller = "GPTModel.from_transformers"
    transformers = _transformers(caller)
    if not isinstance(gpt2_model, transformers.GPT2LMHeadModel):
        raise TypeError(
            f"{caller}: expected a transformers GPT2LMHeadModel, got {type(gpt2_model).__name__}"
        )
    config = gpt2_model.config
    problems = []
    if config.add_cross_attention:
        problems.append("cross-attention (add_cross_attention=True): GPTModel is a decoder only")
    if not config.scale_attn_weights:
        problems.append(
            "unscaled attention scores (scale_attn_weights=False): GPTModel scales them by "
            "1/sqrt(head_dim)"
        )
    if config.scale_attn_by_inverse_layer_idx:
        problems.append(
            "scores scaled by the inverse layer index (scale_attn_by_inverse_layer_idx=True)"
        )
    if config.activation_function not in _TANH_GELU:
        problems.append(
            f"activation_function {config.activation_function!r}: GPTModel's feed-forward uses "
            f"GELU's tanh approximation ({', '.join(_TANH_GELU)})"
        )
    if config.n_inner not in (None, 4 * config.n_embd):
        problems.append(
            f"a feed-forward {config.n_inner} wide (n_inner): GPTModel's is 4 * n_embd = "
            f"{4 * config.n_embd}"
        )
    if config.layer_norm_epsilon != _LAYER_NORM_EPS:
        problems.append(
            f"layer_norm_epsilon {config.layer_norm_epsilon}: GPTModel's layer norms use "
            f"{_LAYER_NORM_EPS}"
        )
    rates = {name: getattr(config, name) for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop")}
    if drop_rate is None and len(set(rates.values())) > 1:
        listed = ", ".join(f"{name}={rate}" for name, rate in rates.items())
        problems.append(
            f"three different dropout rates ({listed}): GPTModel has one drop_rate; "
            f"choose it with drop_rate="
        )
    if problems:
        raise ValueError(
            f"{caller}: GPTModel cannot express this GPT-2 model: {'; '.join(problems)}"
        )
    wte = gpt2_model.transformer.wte.weight
    tied = gpt2_model.lm_head.weight is wte
    gpt_config = {
        "vocab_size": wte.shape[0],
        "context_length": gpt2_model.transformer.wpe.weight.shape[0],
        "emb_dim": config.n_embd,
        "n_heads": config.n_head,
        "n_layers": len(gpt2_model.transformer.h),
        "attention": "multihead",
        "drop_rate": rates["resid_pdrop"] if drop_rate is None else drop_rate,
        "qkv_bias": True,  # GPT-2's c_attn always has a bias
        "position_embedding": True,
        "tie_embeddings": tied,
    }
    with torch.random.fork_rng(devices=[]):  # building draws random weights: spare the caller's
        model = GPTModel(gpt_config).to(device=wte.device, dtype=wte.dtype)
    with torch.no_grad():
        for _, ours, theirs in _paired_tensors(model, gpt2_model):
            ours.copy_(theirs)
    return model.train(gpt2_model.training)


def to_transformers(model: GPTModel, **settings: Any) -> GPT2LMHeadModel:
    """The ``GPT2LMHeadModel`` equal to ``model``; see `GPTModel.to_transformers`."""
    caller = "GPTModel.to_transformers"
    transformers = _transformers(caller)
    problems = _inexpressible(model)
    if problems:
        raise ValueError(f"{caller}: GPT-2 cannot express this model: {'; '.join(problems)}")
    decided = [key for key in settings if key in _ARCHITECTURE]
    if decided:
        raise ValueError(
            f"{caller}: {', '.join(decided)} {'is' if len(decided) == 1 else 'are'} decided by "
            f"the model's config and weights; settings may only set what they leave open "
            f"(eos_token_id, attn_implementation, ...)"
        )
    config = model.config
    vocab_size = config["vocab_size"]
    # GPT2Config's bos and eos default to GPT-2's <|endoftext|>; keep that only where it exists.
    special = _GPT2_END_OF_TEXT if vocab_size > _GPT2_END_OF_TEXT else None
    gpt2_config = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=config["context_length"],
        n_embd=config["emb_dim"],
        n_layer=config["n_layers"],
        n_head=config["n_heads"],
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=config["drop_rate"],
        embd_pdrop=config["drop_rate"],
        attn_pdrop=config["drop_rate"],
        layer_norm_epsilon=_LAYER_NORM_EPS,
        tie_word_embeddings=config["tie_embeddings"],
        **{"bos_token_id": special, "eos_token_id": special, **settings},
    )
    weight = model.tok_emb.weight
    with torch.random.fork_rng(devices=[]):
        gpt2_model = transformers.GPT2LMHeadModel(gpt2_config)
    gpt2_model.to(device=weight.device, dtype=weight.dtype)
    tied = gpt2_model.lm_head.weight is gpt2_model.transformer.wte.weight
    if tied != config["tie_embeddings"]:  # pragma: no cover - a change in transformers
        raise RuntimeError(
            f"{caller}: transformers built lm_head {'tied' if tied else 'untied'}, against "
            f"tie_word_embeddings={config['tie_embeddings']}"
        )
    with torch.no_grad():
        for _, ours, theirs in _paired_tensors(model, gpt2_model):
            theirs.copy_(ours)
    return gpt2_model.train(model.training)


def _inexpressible(model: GPTModel) -> list[str]:
    """What in ``model`` a GPT2LMHeadModel cannot hold, one phrase each (empty: nothing)."""
    problems = []
    if model.pos_emb is None:
        problems.append("no learned position embedding (position_embedding=False): GPT-2 adds one")
    heads = model.config["n_heads"]
    for index, block in enumerate(model.blocks):
        attention = block.attention
        name = type(attention).name
        if name != "multihead":
            problems.append(
                f"layer {index}'s attention {name!r}: GPT-2's is 'multihead' (one query, key "
                f"and value head each, no options)"
            )
            continue
        if attention.num_heads != heads:
            problems.append(
                f"layer {index} has {attention.num_heads} heads: GPT-2 has n_heads={heads} in "
                f"every layer"
            )
        options = attention.options
        chosen = {
            "rope_base": options.rope_base is not None,
            "alibi": options.alibi_slopes is not None,
            "qk_norm": options.q_norm is not None,
            "softcap": options.softcap is not None,
            "window": options.window is not None,
            "sinks": options.sinks is not None,
        }
        for option, on in chosen.items():
            if on:
                problems.append(f"layer {index}'s {option}: GPT-2's attention has no {option}")
    return problems


def _paired_tensors(
    model: GPTModel, gpt2_model: GPT2LMHeadModel
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, GPTModel tensor, the transformers tensor's view in the same layout)`` for all.

    Call under ``torch.no_grad()``: copying into either side of a pair writes
    into that model's parameter. A tied head has no pair of its own (it is the
    embedding); a GPTModel without QKV bias pairs zeros with GPT-2's bias, which
    only the copy into GPT-2 uses.
    """
    source = gpt2_model.transformer
    pairs = [
        ("tok_emb.weight", model.tok_emb.weight, source.wte.weight),
        ("pos_emb.weight", model.pos_emb.weight, source.wpe.weight),
        ("final_norm.weight", model.final_norm.weight, source.ln_f.weight),
        ("final_norm.bias", model.final_norm.bias, source.ln_f.bias),
    ]
    if not model.config["tie_embeddings"]:
        pairs.append(("out_head.weight", model.out_head.weight, gpt2_model.lm_head.weight))
    for index, (block, layer) in enumerate(zip(model.blocks, source.h, strict=True)):
        attention = block.attention
        width = attention.d_out
        qkv = layer.attn.c_attn
        linears = {
            "attention.W_query": (attention.W_query, qkv.weight[:, :width], qkv.bias[:width]),
            "attention.W_key": (
                attention.W_key,
                qkv.weight[:, width : 2 * width],
                qkv.bias[width : 2 * width],
            ),
            "attention.W_value": (
                attention.W_value,
                qkv.weight[:, 2 * width :],
                qkv.bias[2 * width :],
            ),
            "attention.out_proj": (
                attention.out_proj,
                layer.attn.c_proj.weight,
                layer.attn.c_proj.bias,
            ),
            "feed_forward.0": (block.feed_forward[0], layer.mlp.c_fc.weight, layer.mlp.c_fc.bias),
            "feed_forward.2": (
                block.feed_forward[2],
                layer.mlp.c_proj.weight,
                layer.mlp.c_proj.bias,
            ),
        }
        for name, (linear, weight, bias) in linears.items():
            prefix = f"blocks.{index}.{name}"
            pairs.append((f"{prefix}.weight", linear.weight, weight.T))
            ours = linear.bias if linear.bias is not None else torch.zeros_like(bias)
            pairs.append((f"{prefix}.bias", ours, bias))
        for ours_norm, theirs_norm, name in (
            (block.norm1, layer.ln_1, "norm1"),
            (block.norm2, layer.ln_2, "norm2"),
        ):
            pairs.append((f"blocks.{index}.{name}.weight", ours_norm.weight, theirs_norm.weight))
            pairs.append((f"blocks.{index}.{name}.bias", ours_norm.bias, theirs_norm.bias))
    return pairs
