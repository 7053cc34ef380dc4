"""The built-in kernels: ``explicit``, the readable reference; ``sdpa``, fused; ``flex``.

Each takes the arguments described in `attnkit.kernel` and returns
``(context, weights_or_None)``. ``explicit`` writes every step out where a learner
can read it:

$$
\\omega = s \\cdot Q K^\\top, \\qquad
\\alpha = \\operatorname{softmax}(\\omega + M), \\qquad
Z = \\operatorname{dropout}(\\alpha)\\, V
$$

``sdpa`` computes the same through PyTorch's fused
`torch.nn.functional.scaled_dot_product_attention`, which never builds the
``tokens x tokens`` matrix when a fused kernel applies; it is what the built-in
variants use unless told otherwise. ``flex`` runs PyTorch's FlexAttention,
compiled, with the mask as a block mask that skips whole blocks nobody attends.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

import attnkit
from attnkit.masks import Mask


def explicit(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mask: Mask | None,
    scale: float,
    dropout_p: float,
    training: bool,
    need_weights: bool,
    softcap: float | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sinks: torch.Tensor | None = None,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The readable reference: scores, mask, softmax, dropout, weighted sum; returns the weights."""
    _no_options("explicit", options)
    batch, heads, tokens_q, _ = query.shape
    kv_heads, tokens_k = key.shape[1], key.shape[2]
    # Grouped-query attention: each group of heads // kv_heads query heads shares one
    # key and value head, so the queries are grouped instead of the keys repeated.
    groups = heads // kv_heads
    grouped = query.reshape(batch, kv_heads, groups, tokens_q, query.shape[-1])
    # Scores in at least float32, scaled before the product: in float16, q @ k^T of
    # unscaled vectors overflows (and the softmax gives NaN) where SDPA is finite.
    compute = torch.promote_types(query.dtype, torch.float32)
    scores = (grouped.to(compute) * scale) @ key.to(compute).unsqueeze(2).transpose(-2, -1)
    scores = scores.reshape(batch, heads, tokens_q, tokens_k)
    if softcap is not None:  # Gemma 2's soft-capping keeps every score within (-cap, cap)
        scores = softcap * torch.tanh(scores / softcap)
    if alibi_slopes is not None:  # ALiBi: a penalty growing linearly with the distance
        scores = scores + alibi_bias(alibi_slopes, tokens_q, tokens_k).to(compute)
    if mask is not None:
        allowed = mask.to_dense(batch, heads, tokens_q, tokens_k, device=query.device)
        # The lowest finite number, not -inf: a row with no allowed key then stays finite
        # (uniform) instead of NaN, and is zeroed below, in outputs and gradients alike.
        scores = scores.masked_fill(~allowed, torch.finfo(compute).min)
    if sinks is None:
        weights = torch.softmax(scores, dim=-1)
    else:  # a sink per head takes part in the softmax but contributes no value
        sink = sinks.to(compute).view(1, heads, 1, 1).expand(batch, heads, tokens_q, 1)
        weights = torch.softmax(torch.cat((scores, sink), dim=-1), dim=-1)[..., :-1]
    if mask is not None:
        weights = weights * allowed.any(dim=-1, keepdim=True)
    weights = weights.to(value.dtype)
    dropped = F.dropout(weights, p=dropout_p, training=training)
    dropped = dropped.reshape(batch, kv_heads, groups, tokens_q, tokens_k)
    context = (dropped @ value.unsqueeze(2)).reshape(batch, heads, tokens_q, value.shape[-1])
    return context, weights


def sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mask: Mask | None,
    scale: float,
    dropout_p: float,
    training: bool,
    need_weights: bool,
    softcap: float | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sinks: torch.Tensor | None = None,
    **options: Any,
) -> tuple[torch.Tensor, None]:
    """PyTorch's fused scaled_dot_product_attention; the default kernel."""
    _no_options("sdpa", options)
    if softcap is not None or sinks is not None:
        # SDPA has no hook into the scores for these: compute them explicitly, exactly.
        context, _ = explicit(
            query, key, value, mask=mask, scale=scale, dropout_p=dropout_p,
            training=training, need_weights=False, softcap=softcap,
            alibi_slopes=alibi_slopes, sinks=sinks,
        )  # fmt: skip
        return context, None
    batch, heads, tokens_q, _ = query.shape
    tokens_k = key.shape[2]
    arguments: dict[str, Any] = {
        "dropout_p": dropout_p if training else 0.0,
        "scale": scale,
        "enable_gqa": heads != key.shape[1],
    }
    visible = None
    if alibi_slopes is not None:
        # ALiBi as a float mask: the bias where a key is visible, -inf where it is not.
        bias = alibi_bias(alibi_slopes, tokens_q, tokens_k).to(query.dtype).unsqueeze(0)
        if mask is not None:
            visible = mask.to_dense(batch, heads, tokens_q, tokens_k, device=query.device)
            bias = bias.masked_fill(~visible, float("-inf"))
        arguments["attn_mask"] = bias
    elif mask is not None and mask.is_causal and tokens_q == tokens_k:
        arguments["is_causal"] = True  # lets the fused kernel skip the blocks above the diagonal
    elif mask is not None and not (mask.is_causal and tokens_q == 1):
        # (One new token after cached ones may see every key: no mask needed.)
        allowed = mask.to_dense(batch, heads, tokens_q, tokens_k, device=query.device)
        if mask.implies_causal and tokens_q == tokens_k >= _CAUSAL_BLOCKS_FROM:
            return _causal_blocks(query, key, value, allowed, arguments), None
        arguments["attn_mask"] = allowed
    context = F.scaled_dot_product_attention(query, key, value, **arguments)
    if visible is not None:  # a float mask of -inf rows would give NaN: such rows get zeros
        context = context * visible.any(dim=-1, keepdim=True).to(context.dtype)
        context = context.nan_to_num(0.0)
    return context, None


# With a mask SDPA cannot skip the blocks above the diagonal as is_causal=True lets it;
# from this many tokens on, splitting the queries into row blocks, each given only the keys
# up to its end, wins most of that back (4 blocks compute 10/16 of the square, not 16/16).
_CAUSAL_BLOCKS_FROM = 256
_CAUSAL_BLOCKS = 4


def _causal_blocks(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor,
    arguments: dict[str, Any],
) -> torch.Tensor:
    """SDPA with a mask that hides every later key, block of queries by block of queries."""
    tokens = query.shape[2]
    size = -(-tokens // _CAUSAL_BLOCKS)
    contexts = []
    for start in range(0, tokens, size):
        end = min(start + size, tokens)
        contexts.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, :end],
                value[:, :, :end],
                attn_mask=allowed[..., start:end, :end],
                **arguments,
            )
        )
    return torch.cat(contexts, dim=2)


def flex(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mask: Mask | None,
    scale: float,
    dropout_p: float,
    training: bool,
    need_weights: bool,
    softcap: float | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sinks: torch.Tensor | None = None,
    **options: Any,
) -> tuple[torch.Tensor, None]:
    """PyTorch's FlexAttention, compiled, with the mask as a block mask."""
    _no_options("flex", options)
    if dropout_p and training:
        raise NotImplementedError(
            "kernel 'flex': FlexAttention has no dropout on the attention weights; use "
            "kernel='sdpa' (or 'explicit') to train with dropout, or set dropout=0"
        )
    if (
        query.device.type == "cpu"
        and torch.is_grad_enabled()
        and (query.requires_grad or key.requires_grad or value.requires_grad)
    ):
        raise NotImplementedError(
            "kernel 'flex': PyTorch cannot run FlexAttention's backward pass on the CPU; "
            "use kernel='sdpa' (or 'explicit') to train on the CPU, or run flex under "
            "torch.no_grad() for inference"
        )
    batch, heads, tokens_q, _ = query.shape
    if sinks is not None and query.device.type == "cpu":
        raise NotImplementedError(
            "kernel 'flex': attention sinks need FlexAttention's log-sum-exp, which PyTorch "
            "does not return on the CPU; use kernel='sdpa' (or 'explicit') for sinks"
        )
    block_mask = None
    if mask is not None:
        block_mask = mask.to_block_mask(batch, heads, tokens_q, key.shape[2], device=query.device)
    offset = key.shape[2] - tokens_q  # the queries are the last tokens_q positions
    score_mod = None
    if softcap is not None or alibi_slopes is not None:

        def score_mod(score, b, h, q_idx, kv_idx):
            if softcap is not None:
                score = softcap * torch.tanh(score / softcap)
            if alibi_slopes is not None:
                score = score - alibi_slopes[h] * (q_idx + offset - kv_idx)
            return score

    result = _compiled_flex_attention()(
        query,
        key,
        value,
        score_mod=score_mod,
        block_mask=block_mask,
        scale=scale,
        enable_gqa=query.shape[1] != key.shape[1],
        return_lse=sinks is not None,
    )
    if sinks is None:
        return result, None
    context, lse = result
    # A sink adds exp(sink) to the softmax's denominator: rescale by sum / (sum + exp(sink)).
    keep = torch.sigmoid(lse - sinks.view(1, heads, 1).to(lse.dtype))
    return context * keep.unsqueeze(-1).to(context.dtype), None


@functools.cache
def _compiled_flex_attention() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def alibi_bias(slopes: torch.Tensor, tokens_q: int, tokens_k: int) -> torch.Tensor:
    """ALiBi's bias ``(heads, tokens_q, tokens_k)``: ``-slope * (i - j)``, query ``i``, key ``j``.

    The queries are the last ``tokens_q`` of ``tokens_k`` positions.

    Examples:
        >>> alibi_bias(torch.tensor([0.5]), 2, 3)
        tensor([[[-0.5000, -0.0000,  0.5000],
                 [-1.0000, -0.5000, -0.0000]]])
    """
    queries = torch.arange(tokens_k - tokens_q, tokens_k, device=slopes.device)
    keys = torch.arange(tokens_k, device=slopes.device)
    distance = (queries[:, None] - keys[None, :]).to(slopes.dtype)
    return -slopes.view(-1, 1, 1) * distance


def choose_kernel(kernel: str | attnkit.Kernel, owner: str) -> attnkit.Kernel:
    """The registered kernel named ``kernel`` (or ``kernel`` itself), for a variant's ``kernel=``.

    Raises:
        TypeError: ``kernel`` is neither a name nor an `attnkit.Kernel`.
        attnkit.UnknownKernelError: No kernel has that name; the message lists them.
    """
    if not isinstance(kernel, (str, attnkit.Kernel)):
        raise TypeError(
            f"{owner}: kernel must be a kernel name such as 'sdpa' or an attnkit.Kernel, got "
            f"{kernel!r}; kernels: {', '.join(attnkit.list_kernels())}"
        )
    return attnkit.get_kernel(kernel)


def weights_kernel(kernel: attnkit.Kernel) -> attnkit.Kernel:
    """``kernel`` if it can return the attention weights, else the explicit one."""
    return kernel if kernel.returns_weights else EXPLICIT


def _no_options(kernel: str, options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"kernel {kernel!r} takes no options, got {', '.join(sorted(options))}")


SDPA = attnkit.Kernel("sdpa", sdpa)
EXPLICIT = attnkit.Kernel("explicit", explicit, returns_weights=True)
FLEX = attnkit.Kernel("flex", flex)


@attnkit.hookimpl
def register_kernels(register):
    register(SDPA)
    register(EXPLICIT)
    register(FLEX)
