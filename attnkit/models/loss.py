"""`linear_cross_entropy`: the output head and the next-token loss in one pass, without the logits.

Training a language model ends with a product and a loss over the whole vocabulary:

$$
\\text{logits} = H W^\\top, \\qquad
\\mathcal{L} = \\frac{1}{n} \\sum_{i} \\Bigl(\\log \\sum_{v} e^{\\text{logits}_{iv}}
               - \\text{logits}_{i, t_i}\\Bigr)
$$

with ``H`` the ``(n, d)`` hidden states, ``W`` the ``(V, d)`` head and ``t`` the
targets. For GPT-2's vocabulary of 50,257 tokens, a batch of 8 x 256 tokens has
logits of 412 MB in float32, and autograd keeps them, their log-softmax and
their gradient: more memory than the rest of a small model's step, and time
spent writing and re-reading it. The gradient of the loss with respect to the
logits is known in closed form, ``(softmax(logits) - onehot(t)) / n``, so both
products of the backward pass can be computed right after the forward, a block
of rows at a time: each block's logits are made, used and dropped while they
are still in cache. The result equals ``F.cross_entropy(F.linear(H, W), t)``
and its gradients to float rounding (tested in ``tests/test_loss.py``).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["linear_cross_entropy"]

# A block's logits hold about this many elements (32 MB in float32): 166 rows of
# GPT-2's vocabulary, the fastest block size measured on CPU (benchmarks/gpt2_speed.py).
_BLOCK_ELEMENTS = 1 << 23


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``, never holding the logits.

    Equal to ``F.cross_entropy(F.linear(hidden, weight), targets, ignore_index=ignore_index)``.
    The logits are computed in blocks of rows; the softmax and the sums run in
    float32 for float16 and bfloat16 inputs. When gradients are needed, each block's
    contribution to them is computed at once, so the backward pass only scales
    them. Memory beyond the inputs: one block of logits and the two gradients.

    Args:
        hidden: ``(..., d)`` hidden states, floating point.
        weight: ``(V, d)`` output head, as in ``nn.Linear(d, V, bias=False)``.
        targets: ``(...)`` token ids in ``[0, V)``, or ``ignore_index`` where a
            position has no target (padding); shaped like ``hidden`` without its last dimension.
        ignore_index: The target value that is left out of the mean.

    Returns:
        A scalar: the mean over positions whose target is not ``ignore_index``
        (NaN if there are none, as with ``F.cross_entropy``).

    Raises:
        ValueError: The shapes disagree, or a target is out of range.
        TypeError: ``targets`` is not an integer tensor.

    Examples:
        >>> import torch, torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> hidden, weight = torch.randn(2, 5, 8), torch.randn(11, 8)
        >>> targets = torch.randint(0, 11, (2, 5))
        >>> fused = linear_cross_entropy(hidden, weight, targets)
        >>> plain = F.cross_entropy(F.linear(hidden, weight).flatten(0, 1), targets.flatten())
        >>> torch.allclose(fused, plain)
        True
    """
    _check(hidden, weight, targets, ignore_index)
    needs_gradients = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _LinearCrossEntropy.apply(
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        targets.reshape(-1),
        ignore_index,
        needs_gradients,
    )


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, needs_gradients):
        rows = hidden.shape[0]
        block = max(1, _BLOCK_ELEMENTS // weight.shape[0])
        counted = targets != ignore_index
        count = counted.sum()
        safe_targets = torch.where(counted, targets, 0).unsqueeze(1)
        # float32 for float16 and bfloat16 inputs, else their own dtype.
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        total = torch.zeros((), dtype=dtype, device=hidden.device)
        grad_hidden = grad_weight = None
        if needs_gradients:
            grad_hidden = torch.empty_like(hidden, memory_format=torch.contiguous_format)
        for start in range(0, rows, block):
            stop = min(start + block, rows)
            hidden_block, targets_block = hidden[start:stop], safe_targets[start:stop]
            kept = counted[start:stop].unsqueeze(1).to(dtype)  # 0 where the target is ignored
            logits = (hidden_block @ weight.t()).to(dtype)
            target_logits = logits.gather(1, targets_block)
            probabilities = torch.softmax(logits, dim=-1)
            # -log p(target) = log-sum-exp - target logit; from the softmax it is one log per
            # row, unless p(target) underflows, where the row's log-sum-exp is computed again.
            target_probabilities = probabilities.gather(1, targets_block)
            losses = -torch.log(target_probabilities)
            underflow = target_probabilities < torch.finfo(dtype).tiny  # subnormal or zero
            if underflow.any():
                rows_under = underflow.squeeze(1)
                losses[rows_under] = (
                    torch.logsumexp(logits[rows_under], dim=-1, keepdim=True)
                    - target_logits[rows_under]
                )
            total += (losses * kept).sum()
            del logits
            if not needs_gradients:
                continue
            # d loss / d logits = (softmax(logits) - onehot(target)) * kept / count. The
            # factor per row is applied to the block's small operands, not to its logits.
            grad_logits = probabilities.scatter_add_(1, targets_block, -kept)
            row_factor = kept / count
            product = grad_logits.to(hidden.dtype) @ weight
            grad_hidden[start:stop] = product * row_factor.to(hidden.dtype)
            # Row-major whatever the weight's layout: accumulating into it is fastest.
            block_grad = (grad_logits.t(), hidden_block.to(dtype) * row_factor)
            if grad_weight is None:
                grad_weight = torch.mm(*block_grad)
            else:
                grad_weight.addmm_(*block_grad)
        if needs_gradients:
            if grad_weight is None:  # no rows
                grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device)
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return (total / count).to(hidden.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def _check(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int
) -> None:
    where = "linear_cross_entropy"
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point():
        kind = targets.dtype if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise TypeError(f"{where}: targets must be an integer tensor, got {kind}")
    if weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{where}: expected hidden (..., d) and weight (V, d), got hidden "
            f"{tuple(hidden.shape)} and weight {tuple(weight.shape)}"
        )
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(
            f"{where}: expected targets of shape {tuple(hidden.shape[:-1])} (hidden's "
            f"without its last dimension), got {tuple(targets.shape)}"
        )
    counted = targets[targets != ignore_index]
    if counted.numel() and (int(counted.min()) < 0 or int(counted.max()) >= weight.shape[0]):
        bad = int(counted.min()) if int(counted.min()) < 0 else int(counted.max())
        raise ValueError(
            f"{where}: target {bad} is out of range; targets must be in [0, {weight.shape[0]}) "
            f"or ignore_index ({ignore_index})"
        )
