"""The conformance kit, `attnkit.testing`: every registered variant passes it, each
check fails, naming its rule, on a variant broken on purpose, and its doors (the
report, the iterator, the command, pytest) share one way of running and of writing.

The broken variants below are small single-head attentions that each get one
thing wrong. They are checked as classes, without being registered.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnkit
import attnkit.testing
from attnkit._arguments import STANDARD_SIZES
from attnkit.cli import main
from attnkit.testing import (
    CHECKS,
    CheckResult,
    ConformanceReport,
    Outcome,
    VariantBuildError,
    VariantSpec,
    build_arguments,
    check_variant,
    compile_support,
    iter_checks,
    parametrize_with_checks,
)

CHECK_NAMES = [check.name for check in CHECKS]


# --- Every registered variant passes ---------------------------------------------------


@parametrize_with_checks(attnkit.list_variants())
def test_registered_variants_conform(variant, check):
    check(variant)


def test_the_builtins_are_among_the_checked():
    builtins = {v for p in attnkit.list_plugins() if p.builtin for v in p.variants}
    assert {"simple", "self_attention", "causal", "multihead", "multihead_wrapper"} <= builtins
    assert builtins <= set(attnkit.list_variants())


# --- Variants broken on purpose ----------------------------------------------------------


class Working(attnkit.Attention):
    """Single-head scaled dot-product attention, correct; the broken variants subclass it."""

    causal = False
    width = 8

    def __init__(self, d_in: int = 8, context_length: int = 8) -> None:
        super().__init__(d_in=d_in, context_length=context_length)
        self.W_query = nn.Linear(d_in, d_in)
        self.W_key = nn.Linear(d_in, d_in)
        self.W_value = nn.Linear(d_in, d_in)

    def hidden(self, tokens: int, device: torch.device) -> torch.Tensor | None:
        """Boolean (tokens, tokens), True where a query must not attend; None: attend to all."""
        if not self.causal:
            return None
        return torch.ones(tokens, tokens, dtype=torch.bool, device=device).triu(1)

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = queries @ keys.transpose(1, 2) / x.shape[-1] ** 0.5
        hidden = self.hidden(x.shape[1], x.device)
        if hidden is not None:
            scores = scores.masked_fill(hidden, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ values, weights.unsqueeze(1)

    def forward(self, x, need_weights=False):
        context, weights = self.attend(x)
        return (context, weights) if need_weights else context


class WorkingCausal(Working):
    """Causal single-head attention, correct."""

    causal = True


class WorkingCached(WorkingCausal):
    """Causal single-head attention with a correct KV cache."""

    supports_kv_cache = True

    def forward(self, x, need_weights=False, *, cache=None):
        if cache is None:
            return super().forward(x, need_weights)
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        keys, values = cache.append(keys.unsqueeze(1), values.unsqueeze(1))
        keys, values = keys.squeeze(1), values.squeeze(1)
        past = keys.shape[1] - x.shape[1]
        scores = queries @ keys.transpose(1, 2) / x.shape[-1] ** 0.5
        hidden = torch.ones(keys.shape[1], keys.shape[1], dtype=torch.bool).triu(1)[past:]
        weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)
        context = weights @ values
        return (context, weights.unsqueeze(1)) if need_weights else context


class ForgetsTheCache(WorkingCausal):
    """Declares a KV cache but ignores it: each new token attends only to itself."""

    supports_kv_cache = True

    def forward(self, x, need_weights=False, *, cache=None):
        return super().forward(x, need_weights)


class CachesWithoutCausality(Working):
    """Declares a KV cache although it is not causal."""

    supports_kv_cache = True

    def forward(self, x, need_weights=False, *, cache=None):
        return super().forward(x, need_weights)


class ReducesTokens(Working):
    """Returns one vector per sequence instead of one per token."""

    def forward(self, x, need_weights=False):
        return self.attend(x)[0].mean(1)


class ChangesDtype(Working):
    """Returns float64 whatever the input."""

    def forward(self, x, need_weights=False):
        return self.attend(x)[0].double()


class MisstatesItsWidth(Working):
    """Declares an output_dim that is not the width of what it returns."""

    @property
    def output_dim(self):
        return 2 * self.d_in


class MixesTheBatch(Working):
    """Subtracts the batch mean, so each sequence's output depends on the others."""

    def forward(self, x, need_weights=False):
        context = self.attend(x)[0]
        return context - context.mean(0, keepdim=True)


def _raw_forward(self, x, need_weights=False):
    context, weights = self.attend(x if x.dim() == 3 else x.reshape(1, -1, self.width))
    return (context, weights) if need_weights else context


class SkipsInputChecks(Working):
    """Its forward is swapped after class creation, bypassing the base class's checks."""


SkipsInputChecks.forward = _raw_forward


class ForgetsDIn(Working):
    """Takes d_in but does not pass it to the base class, so widths go unchecked."""

    def __init__(self, d_in: int = 8) -> None:
        attnkit.Attention.__init__(self)
        self.W_query = nn.Linear(d_in, d_in)
        self.W_key = nn.Linear(d_in, d_in)
        self.W_value = nn.Linear(d_in, d_in)


class Unnormalised(Working):
    """Returns exponentiated scores as weights: rows do not sum to 1."""

    def forward(self, x, need_weights=False):
        context, weights = self.attend(x)
        return (context, weights.exp()) if need_weights else context


class NegativeWeights(Working):
    """Rows sum to 1, but some weights are negative."""

    def forward(self, x, need_weights=False):
        context, weights = self.attend(x)
        return (context, 2 * weights - 1 / x.shape[1]) if need_weights else context


class WeightsWithoutHeads(Working):
    """Returns weights of shape (batch, tokens, tokens)."""

    def forward(self, x, need_weights=False):
        context, weights = self.attend(x)
        return (context, weights[:, 0]) if need_weights else context


class IgnoresNeedWeights(Working):
    """Returns only the context, whatever need_weights says."""

    def forward(self, x, need_weights=False):
        return self.attend(x)[0]


class ChangesWithNeedWeights(Working):
    """Returns a different context when asked for the weights."""

    def forward(self, x, need_weights=False):
        context, weights = self.attend(x)
        return (2 * context, weights) if need_weights else context


class LooksAhead(WorkingCausal):
    """Declares itself causal, but each token also sees the next one."""

    def hidden(self, tokens, device):
        return torch.ones(tokens, tokens, dtype=torch.bool, device=device).triu(2)


class LeaksAtPositionTwo(WorkingCausal):
    """Causal, except that the token at position 2 also sees position 4."""

    def hidden(self, tokens, device):
        hidden = super().hidden(tokens, device)
        if tokens > 4:
            hidden[2, 4] = False
        return hidden


class ReportsFutureWeights(WorkingCausal):
    """Computes causally, but reports weights that look ahead."""

    def forward(self, x, need_weights=False):
        context, _ = self.attend(x)
        self.causal = False  # report the weights as if it were not causal
        _, weights = self.attend(x)
        del self.causal
        return (context, weights) if need_weights else context


class AlwaysDropout(Working):
    """Applies dropout in eval mode too."""

    def __init__(self, d_in: int = 8, dropout: float = 0.0) -> None:
        super().__init__(d_in=d_in)
        self.p = dropout

    def forward(self, x, need_weights=False):
        return F.dropout(self.attend(x)[0], p=self.p, training=True)


class UnusedParameter(Working):
    """Has a parameter that forward never uses."""

    def __init__(self, d_in: int = 8) -> None:
        super().__init__(d_in=d_in)
        self.unused = nn.Parameter(torch.zeros(d_in))


class DetachesOutput(Working):
    """Detaches its output, so no gradient flows."""

    def forward(self, x, need_weights=False):
        return self.attend(x)[0].detach()


class CastsToFloat32(Working):
    """Computes and returns float32 whatever the input dtype."""

    def forward(self, x, need_weights=False):
        return self.float().attend(x.float())[0]


class DriftsInFloat32(Working):
    """Adds 1e-3 to its float32 outputs only."""

    def forward(self, x, need_weights=False):
        context = self.attend(x)[0]
        return context + 1e-3 if x.dtype == torch.float32 else context


class RandomBuffer(Working):
    """Uses a random buffer that is not saved in the state_dict."""

    def __init__(self, d_in: int = 8) -> None:
        super().__init__(d_in=d_in)
        self.register_buffer("offset", torch.randn(d_in), persistent=False)

    def forward(self, x, need_weights=False):
        return self.attend(x + self.offset)[0]


class GraphBreak(Working):
    """Branches in Python on a tensor's value, which torch.compile cannot trace in one graph."""

    def forward(self, x, need_weights=False):
        context = self.attend(x)[0]
        if context.sum() > 0:
            return context
        return -context


class CompiledDiffers(Working):
    """Computes something else when compiled."""

    def forward(self, x, need_weights=False):
        context = self.attend(x)[0]
        return 2 * context if torch.compiler.is_compiling() else context


class StrayTensor(WorkingCausal):
    """Keeps its mask as a plain tensor attribute, which .to() does not move."""

    def __init__(self, d_in: int = 8, context_length: int = 8) -> None:
        super().__init__(d_in=d_in, context_length=context_length)
        self.mask = torch.ones(context_length, context_length, dtype=torch.bool).triu(1)

    def hidden(self, tokens, device):
        return self.mask[:tokens, :tokens]


class MaskOnTheCPU(WorkingCausal):
    """Creates its mask in forward on the default device, not the input's."""

    def hidden(self, tokens, device):
        return torch.ones(tokens, tokens, dtype=torch.bool).triu(1)


class Crashes(Working):
    """Its forward raises."""

    def forward(self, x, need_weights=False):
        raise RuntimeError("boom")


class NoWeights(WorkingCausal):
    """Causal single-head attention that declares no capability, not even the weights."""

    capabilities = frozenset()


# --- Variants with a padding mask and positions, correct and broken ---------------------------


class WorkingMasked(WorkingCausal):
    """Causal single-head attention with a padding mask and a KV cache, correct."""

    capabilities = frozenset({"attention_mask", "kv_cache", "weights"})

    def forward(self, x, need_weights=False, *, attention_mask=None, cache=None):
        return self.masked(x, need_weights, attention_mask, cache)

    def embed(self, x, position_ids):
        """The input as the projections see it; a variant with positions adds them."""
        return x

    def allowed(self, attention_mask, past, total, batch, device):
        """Bool (batch, tokens, past + tokens): the keys each query may attend to."""
        allowed = torch.ones(total, total, dtype=torch.bool, device=device).tril()[past:]
        allowed = allowed.expand(batch, -1, -1)
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, :]
        return allowed

    def normalise(self, scores, allowed):
        """Softmax over the allowed keys; zeros for a query with none."""
        scores = scores.masked_fill(~allowed, float("-inf"))
        blind = ~allowed.any(-1, keepdim=True)
        return torch.softmax(scores.masked_fill(blind, 0.0), dim=-1).masked_fill(~allowed, 0.0)

    def masked(self, x, need_weights, attention_mask, cache, position_ids=None):
        x = self.embed(x, position_ids)
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        if cache is not None:
            keys, values = cache.append(keys.unsqueeze(1), values.unsqueeze(1))
            keys, values = keys.squeeze(1), values.squeeze(1)
        past = keys.shape[1] - x.shape[1]
        allowed = self.allowed(attention_mask, past, keys.shape[1], x.shape[0], x.device)
        scores = queries @ keys.transpose(1, 2) / x.shape[-1] ** 0.5
        weights = self.normalise(scores, allowed)
        context = weights @ values
        return (context, self.reported(weights, scores)) if need_weights else context

    def reported(self, weights, scores):
        """The weights forward(need_weights=True) returns."""
        return weights.unsqueeze(1)


class WorkingPositions(WorkingMasked):
    """WorkingMasked with learned absolute positions, taken from position_ids, correct."""

    capabilities = frozenset({"attention_mask", "kv_cache", "weights", "position_ids"})

    def __init__(self, d_in: int = 8, context_length: int = 8) -> None:
        super().__init__(d_in=d_in, context_length=context_length)
        self.position = nn.Embedding(context_length, d_in)

    def forward(self, x, need_weights=False, *, attention_mask=None, position_ids=None, cache=None):
        return self.masked(x, need_weights, attention_mask, cache, position_ids)

    def embed(self, x, position_ids):
        return x + self.position(position_ids)


class IgnoresTheMask(WorkingMasked):
    """Declares attention_mask but attends to padding keys too."""

    def allowed(self, attention_mask, past, total, batch, device):
        return super().allowed(None, past, total, batch, device)


class InvertsTheMask(WorkingMasked):
    """Reads the attention_mask the wrong way round: True as padding."""

    def allowed(self, attention_mask, past, total, batch, device):
        inverted = None if attention_mask is None else ~attention_mask
        return super().allowed(inverted, past, total, batch, device)


class NaNAtPadding(WorkingMasked):
    """Marks its outputs at padding positions with NaN."""

    def forward(self, x, need_weights=False, *, attention_mask=None, cache=None):
        context = self.masked(x, False, attention_mask, cache)
        if attention_mask is not None:
            context = context.masked_fill(~attention_mask[:, -x.shape[1] :, None], float("nan"))
        return (
            (context, self.masked(x, True, attention_mask, cache)[1]) if need_weights else context
        )


class WeightsOnPadding(WorkingMasked):
    """Computes with the mask but reports weights computed without it."""

    def reported(self, weights, scores):
        causal = torch.ones_like(scores, dtype=torch.bool).tril(scores.shape[-1] - scores.shape[-2])
        return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1).unsqueeze(1)


class AbsolutePositions(WorkingMasked):
    """Adds learned positions counted from the first token, padding or not, without
    declaring position_ids: left padding moves every real token."""

    def __init__(self, d_in: int = 8, context_length: int = 8) -> None:
        super().__init__(d_in=d_in, context_length=context_length)
        self.position = nn.Embedding(context_length, d_in)

    def embed(self, x, position_ids):
        return x + self.position(torch.arange(x.shape[1], device=x.device))


class BlindNaN(WorkingMasked):
    """A query with no key to attend to gets a softmax over -inf only: NaN."""

    def normalise(self, scores, allowed):
        return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


class BlindUniform(WorkingMasked):
    """Masks with the lowest finite score: a query with no key averages the masked values."""

    def normalise(self, scores, allowed):
        return torch.softmax(scores.masked_fill(~allowed, torch.finfo(scores.dtype).min), dim=-1)


class BlindNaNGradient(WorkingMasked):
    """Adds the mask as -inf and replaces the NaN of fully masked rows by zeros after the
    softmax: the right outputs, but NaN gradients."""

    def normalise(self, scores, allowed):
        bias = torch.zeros_like(scores).masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores + bias, dim=-1).nan_to_num(0.0)


class BlindWeights(WorkingMasked):
    """Gives fully masked queries a zero context but reports uniform weights for them."""

    def reported(self, weights, scores):
        blind = weights.sum(-1, keepdim=True) == 0
        uniform = torch.full_like(weights, 1 / weights.shape[-1])
        return torch.where(blind, uniform, weights).unsqueeze(1)


class CacheForgetsPadding(WorkingMasked):
    """With a cache, applies the attention_mask to the new keys only, not the cached ones."""

    def allowed(self, attention_mask, past, total, batch, device):
        if attention_mask is not None and past:
            attention_mask = attention_mask.clone()
            attention_mask[:, :past] = True
        return super().allowed(attention_mask, past, total, batch, device)


def _positions_from_zero(self, x, need_weights=False, *, position_ids=None, cache=None, **kw):
    if position_ids is None:  # ignores the cache: every step starts again at position 0
        position_ids = torch.arange(x.shape[1]).expand(x.shape[0], -1)
    return self.masked(x, need_weights, kw.get("attention_mask"), cache, position_ids)


class PositionsFromZero(WorkingPositions):
    """Its forward is swapped after class creation, bypassing the base class, and counts
    default positions from 0 whatever the cache holds."""


PositionsFromZero.forward = _positions_from_zero


def _any_positions(self, x, need_weights=False, *, position_ids=None, cache=None, **kw):
    if position_ids is not None:  # stretches or cuts positions of any shape to fit
        position_ids = position_ids.reshape(-1)[: x.shape[1]].expand(x.shape[0], -1)
    past = 0 if cache is None else cache.length
    if position_ids is None:
        position_ids = torch.arange(past, past + x.shape[1]).expand(x.shape[0], -1)
    return self.masked(x, need_weights, kw.get("attention_mask"), cache, position_ids)


class AcceptsAnyPositions(WorkingPositions):
    """Its forward is swapped after class creation, bypassing the base class's checks, and
    takes position_ids of any shape."""


AcceptsAnyPositions.forward = _any_positions


BROKEN = [
    (
        "batched_shape",
        ReducesTokens,
        r"batched_shape: forward\(x\) with x of shape \(2, 6, 8\) returned shape \(2, 8\); "
        r"expected \(2, 6, width\): one context vector per token",
    ),
    (
        "batched_shape",
        ChangesDtype,
        r"batched_shape: forward\(x\) returned torch.float64 for torch.float32 input",
    ),
    (
        "batched_shape",
        MisstatesItsWidth,
        r"batched_shape: forward\(x\) returned context vectors of width 8; expected 16, its "
        r"output_dim",
    ),
    (
        "unbatched_shape",
        MixesTheBatch,
        r"unbatched_shape: forward\(x\[1\]\) differs from forward\(x\)\[1\] \(max abs difference "
        r"[\d.e-]+\); each sequence of a batch must be processed independently",
    ),
    (
        "rank_validation",
        SkipsInputChecks,
        r"rank_validation: (an input of shape \(8,\) \(rank 1\) raised \w+|forward accepted an "
        r"input of shape \(8,\) \(rank 1\)).*other ranks raise ValueError",
    ),
    (
        "d_in_validation",
        ForgetsDIn,
        r"d_in_validation: the variant takes d_in=8 but its d_in attribute is None, so inputs "
        r"of the wrong width are not caught",
    ),
    (
        "need_weights",
        Unnormalised,
        r"need_weights: weights of \(batch 0, head 0, query 0\) sum to [\d.]+; each row of "
        r"attention weights must sum to 1",
    ),
    (
        "need_weights",
        NegativeWeights,
        r"need_weights: weight at \(batch, head, query, key\) = \(\d, 0, \d, \d\) is -[\d.e-]+; "
        r"attention weights must be non-negative",
    ),
    (
        "need_weights",
        WeightsWithoutHeads,
        r"need_weights: weights have shape \(2, 6, 6\); expected \(batch, heads, tokens, "
        r"tokens\) = \(2, heads, 6, 6\)",
    ),
    (
        "need_weights",
        IgnoresNeedWeights,
        r"need_weights: forward\(x, need_weights=True\) returned Tensor; expected a "
        r"\(context, weights\) pair",
    ),
    (
        "need_weights",
        ChangesWithNeedWeights,
        r"need_weights: the context returned with need_weights=True differs from forward\(x\)",
    ),
    (
        "causality",
        LooksAhead,
        r"causality: output at position 0 changed when tokens after it were perturbed \(tokens "
        r"1 to 5; max abs change [\d.e-]+\); a causal variant's output at position t may depend "
        r"only on tokens 0 to t",
    ),
    (
        "causality",
        LeaksAtPositionTwo,
        r"causality: output at position 2 changed when tokens after it were perturbed \(tokens "
        r"3 to 5;",
    ),
    (
        "causality",
        ReportsFutureWeights,
        r"causality: the weight of query 0 on key 1, a later token, is [\d.e-]+ \(batch 0, "
        r"head 0\); a causal variant's weights must be 0 above the diagonal",
    ),
    (
        "kv_cache",
        ForgetsTheCache,
        r"kv_cache: fed through a KVCache \(2 tokens, then one at a time\), the output at "
        r"position 2 differs from the full sequence's by up to [\d.e-]+; forward\(x, cache=...\) "
        r"must equal the matching rows of forward on all tokens",
    ),
    (
        "kv_cache",
        CachesWithoutCausality,
        r"kv_cache: the variant declares supports_kv_cache = True but not causal = True",
    ),
    (
        "determinism",
        AlwaysDropout,
        r"determinism: two forward passes in eval mode with dropout=0.5 differ \(max abs "
        r"difference [\d.e-]+\); in eval mode, dropout and any other randomness must be off",
    ),
    (
        "gradients",
        UnusedParameter,
        r"gradients: parameter 'unused' got no gradient; every trainable parameter must take "
        r"part in forward",
    ),
    (
        "gradients",
        DetachesOutput,
        r"gradients: the output does not require grad; forward must not detach its result",
    ),
    (
        "float64",
        CastsToFloat32,
        r"float64: a module and input in torch.float64 gave output in torch.float32; the output "
        r"must keep the input's dtype",
    ),
    (
        "float64",
        DriftsInFloat32,
        r"float64: the float32 output differs from the float64 output of the same weights by up "
        r"to 0.001 \(tolerance atol=1e-05, rtol=1e-05\)",
    ),
    (
        "bfloat16",
        CastsToFloat32,
        r"bfloat16: a module and input in torch.bfloat16 gave output in torch.float32",
    ),
    (
        "state_dict",
        RandomBuffer,
        r"state_dict: a module built with another seed and loaded from the state_dict gives "
        r"different outputs \(max abs difference [\d.e-]+\); everything forward depends on must "
        r"be a parameter or a persistent buffer",
    ),
    (
        "to_device",
        StrayTensor,
        r"to_device: tensor attribute 'mask' is neither a parameter nor a buffer, so .to\(\) "
        r"leaves it behind; register it with register_buffer",
    ),
    (
        "to_device",
        MaskOnTheCPU,
        r"to_device: after .to\('meta'\), forward on a meta input raised RuntimeError: .*; "
        r"forward must create its tensors on the input's device",
    ),
    (
        "padding",
        IgnoresTheMask,
        r"padding: with left padding \(2 random padding token\(s\) in sequence 0\), the output "
        r"at real token 0 differs from the sequence's own output \(unpadded, alone\) by up to "
        r"[\d.e-]+; outputs at real tokens must not depend on the padding",
    ),
    (
        "padding",
        InvertsTheMask,
        r"padding: an attention_mask of all ones changed the output of a 6-token sequence by up "
        r"to [\d.e-]+; without padding, attention_mask must change nothing",
    ),
    (
        "padding",
        NaNAtPadding,
        r"padding: with right padding, the output at padding position 6 of sequence 0 is not "
        r"finite; outputs at padding positions must be finite",
    ),
    (
        "padding",
        WeightsOnPadding,
        r"padding: with right padding, query 6 of sequence 0 \(head 0\) gives padding key 6 the "
        r"weight [\d.e-]+; padding keys must get no weight",
    ),
    (
        "padding",
        AbsolutePositions,
        r"padding: with left padding \(2 random padding token\(s\) in sequence 0\), the output "
        r"at real token 0 differs",
    ),
    (
        "masked_rows",
        BlindNaN,
        r"masked_rows: the output at position 0 of sequence 0 \(sequence 0 has 3 left padding "
        r"tokens, all a causal query there sees\) is not finite \(NaN or inf\); a query whose "
        r"every key is masked must get a zero context, not NaN",
    ),
    (
        "masked_rows",
        BlindUniform,
        r"masked_rows: the output at position 0 of sequence 0 \(.*\) changed by up to [\d.e-]+ "
        r"when the inputs changed; a query whose every key is masked must get a zero context",
    ),
    (
        "masked_rows",
        BlindNaNGradient,
        r"masked_rows: with queries whose every key is masked, the input got a non-finite "
        r"gradient; fully masked rows must give finite gradients",
    ),
    (
        "masked_rows",
        BlindWeights,
        r"masked_rows: the weights of query 0 of sequence 0 \(head 0; sequence 0 has 3 left "
        r"padding tokens, all a causal query there sees\) sum to 1; a query whose every key is "
        r"masked must get weights of 0",
    ),
    (
        "kv_cache_padding",
        CacheForgetsPadding,
        r"kv_cache_padding: fed through a KVCache \(3 tokens, then one at a time\) with a "
        r"left-padded batch \(attention_mask covering the cached and new tokens at each step\), "
        r"the output at position 3 of sequence 0, a real token, differs from the full pass's by "
        r"up to [\d.e-]+; cached decoding must equal the full pass at real tokens",
    ),
    (
        "position_ids",
        PositionsFromZero,
        r"position_ids: with a KVCache holding 2 tokens, forward\(x, cache=..., "
        r"position_ids=\[\[2\]\]\) differs from forward\(x, cache=...\) by up to [\d.e-]+; by "
        r"default the positions continue from the cache's length",
    ),
    (
        "position_ids",
        AcceptsAnyPositions,
        r"position_ids: forward accepted position_ids of shape \(2, 7\) for an input of shape "
        r"\(2, 6, 8\); position_ids must be \(batch, tokens\) = \(2, 6\), and other shapes raise "
        r"ValueError",
    ),
    (
        "batched_shape",
        Crashes,
        r"batched_shape: raised RuntimeError: boom \(rule: forward\(\(batch, tokens, d_in\)\) "
        r"returns",
    ),
]


@pytest.mark.parametrize(
    ("check", "variant", "message"),
    BROKEN,
    ids=[f"{check}-{variant.__name__}" for check, variant, _ in BROKEN],
)
def test_each_check_fails_on_a_variant_that_breaks_its_rule(check, variant, message):
    [result] = check_variant(variant, checks=[check]).results
    assert result.outcome is Outcome.FAILED, result.message
    assert result.check == check
    assert result.message.startswith(f"{check}: ")
    assert re.match(message, result.message), result.message


@pytest.mark.parametrize(
    "variant", [Working, WorkingCausal, WorkingCached, NoWeights, WorkingMasked, WorkingPositions]
)
def test_the_working_variants_pass_every_check(variant):
    report = check_variant(variant, compile_backend="aot_eager")
    assert report.ok, str(report)
    skipped = {result.check for result in report if result.skipped}
    expected = set() if variant.causal else {"causality"}
    if not variant.supports_kv_cache:
        expected.add("kv_cache")
    declared = variant.capabilities
    for check, capabilities in [
        ("need_weights", {"weights"}),
        ("padding", {"attention_mask"}),
        ("masked_rows", {"attention_mask"}),
        ("kv_cache_padding", {"kv_cache", "attention_mask"}),
        ("position_ids", {"position_ids"}),
    ]:
        if not capabilities <= declared:
            expected.add(check)
    assert skipped == expected


def test_the_checks_of_an_undeclared_capability_are_skipped_naming_it():
    report = check_variant(
        NoWeights, checks=["need_weights", "padding", "kv_cache_padding", "position_ids"]
    )
    assert [result.message for result in report] == [
        "need_weights: the variant does not declare the 'weights' capability",
        "padding: the variant does not declare the 'attention_mask' capability",
        "kv_cache_padding: the variant does not declare the 'kv_cache' and 'attention_mask' "
        "capabilities",
        "position_ids: the variant does not declare the 'position_ids' capability",
    ]
    assert check_variant(NoWeights, checks=["causality"]).ok  # it does not ask for weights


def test_the_padding_checks_skip_when_context_length_leaves_no_room():
    report = check_variant(
        WorkingMasked,
        {"context_length": 1},
        checks=["padding", "masked_rows", "kv_cache_padding"],
    )
    assert report["padding"].message == (
        "padding: context_length 1 leaves no room for a padding token"
    )
    assert report["masked_rows"].passed  # one token, in an all-padding sequence
    assert report["kv_cache_padding"].message == (
        "kv_cache_padding: context_length 1 leaves no room for padding, a prompt and a new token"
    )


def test_every_check_has_a_broken_variant_that_fails_it():
    assert {check for check, _, _ in BROKEN} | {"compile"} == set(CHECK_NAMES)


# --- torch.compile ---------------------------------------------------------------------------


def test_compile_fails_on_a_graph_break():
    [result] = check_variant(GraphBreak, checks=["compile"], compile_backend="eager").results
    assert result.failed
    assert result.message.startswith(
        "compile: torch.compile(fullgraph=True, backend='eager') could not compile forward: "
    )
    assert result.message.endswith(
        "forward must trace as one graph (no data-dependent Python control flow, .item(), print "
        "or other graph breaks)"
    )


def test_compile_fails_when_the_compiled_output_differs():
    [result] = check_variant(CompiledDiffers, checks=["compile"], compile_backend="eager").results
    assert result.failed
    assert result.message.startswith("compile: the compiled module's output differs from eager")


def test_compile_is_skipped_where_torch_compile_is_unsupported(monkeypatch):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    assert "does not support torch.compile on Python" in compile_support()
    [result] = check_variant(Working, checks=["compile"]).results
    assert result.skipped
    assert result.message.startswith("compile: torch ")
    assert "does not support torch.compile on Python 3." in result.message


def test_compile_with_inductor_is_skipped_without_a_cpp_compiler(monkeypatch):
    import torch._inductor.cpp_builder

    def no_compiler():
        raise RuntimeError("no g++ here")

    monkeypatch.setattr(torch._inductor.cpp_builder, "get_cpp_compiler", no_compiler)
    [result] = check_variant(Working, checks=["compile"]).results
    assert result.skipped
    assert "the inductor backend needs a C++ compiler on the CPU and found none" in result.message
    assert "RuntimeError: no g++ here" in result.message
    assert compile_support("aot_eager") is None  # other backends need no compiler


def test_compile_is_supported_here():
    assert compile_support("inductor") is None


# --- Checks that do not apply are skipped, with the reason -----------------------------------


def test_causality_is_skipped_for_a_variant_that_does_not_claim_it():
    result = check_variant("self_attention", checks=["causality"])["causality"]
    assert result.skipped
    assert result.message == "causality: the variant does not declare causal = True"


def test_d_in_validation_is_skipped_for_a_variant_of_any_width():
    result = check_variant("simple", checks=["d_in_validation"])["d_in_validation"]
    assert result.skipped
    assert result.message == (
        "d_in_validation: the variant accepts inputs of any width (its d_in is None)"
    )


def test_causality_is_skipped_when_there_is_no_later_token():
    result = check_variant("causal", {"context_length": 1}, checks=["causality"])["causality"]
    assert result.skipped
    assert "context_length 1 leaves no later token to perturb" in result.message


def test_checks_can_be_skipped_on_request():
    report = check_variant("causal", checks=["causality", "compile"], skip=["compile"])
    assert [(r.check, r.outcome) for r in report] == [
        ("causality", Outcome.PASSED),
        ("compile", Outcome.SKIPPED),
    ]
    assert report["compile"].message == "compile: skipped on request"


# --- The report --------------------------------------------------------------------------------


def test_the_report_lists_each_result_in_check_order():
    report = check_variant(LooksAhead, checks=["need_weights", "causality", "d_in_validation"])
    assert [r.check for r in report] == ["d_in_validation", "need_weights", "causality"]
    assert not report.ok
    assert report.failures == [report["causality"]]
    assert report.summary() == "2 passed, 1 failed, 0 skipped"
    assert report.variant == "LooksAhead" and report.cls is LooksAhead
    sizes = {name: STANDARD_SIZES[name] for name in ("d_in", "context_length")}
    assert report.arguments == sizes
    lines = str(report).splitlines()
    assert lines[0] == f"LooksAhead: d_in={sizes['d_in']}, context_length={sizes['context_length']}"
    assert re.match(r"  PASS  d_in_validation +an input of width ", lines[1])
    assert re.match(r"  FAIL  causality +output at position 0 changed", lines[3])
    assert lines[1].index("an input") == lines[3].index("output at"), "details line up"
    assert lines[1:-1] == [result.format() for result in report]
    assert lines[-1] == "2 passed, 1 failed, 0 skipped"
    assert all(isinstance(r, CheckResult) and r.seconds >= 0 for r in report)
    with pytest.raises(KeyError, match="no result for check 'compile'; checks that ran: "):
        report["compile"]


def test_a_registered_name_is_reported_by_its_name():
    report = check_variant("multihead", {"num_heads": 4}, checks=["batched_shape"])
    assert report.variant == "multihead"
    assert report.arguments["num_heads"] == 4
    sizes = ", ".join(f"{k}={STANDARD_SIZES[k]}" for k in ("d_in", "d_out", "context_length"))
    assert str(report).startswith(f"multihead: {sizes}, num_heads=4")


def test_checking_leaves_the_random_state_and_the_registry_alone():
    state = torch.get_rng_state()
    names = attnkit.list_variants()
    check_variant(Working, checks=["batched_shape", "determinism", "state_dict"])
    assert torch.equal(torch.get_rng_state(), state)
    assert attnkit.list_variants() == names


# --- One iterator of results, one way of writing them --------------------------------------


class Counting(Working):
    """Working, counting its forward passes."""

    forward_calls = 0

    def forward(self, x, need_weights=False):
        type(self).forward_calls += 1
        return super().forward(x, need_weights)


def test_iter_checks_yields_each_result_lazily_in_check_order():
    Counting.forward_calls = 0
    results = iter_checks(Counting, checks=["state_dict", "batched_shape", "determinism"])
    assert Counting.forward_calls == 0, "validated and built, but no check may run yet"
    first = next(results)
    assert isinstance(first, CheckResult) and first.check == "batched_shape" and first.passed
    after_first = Counting.forward_calls
    assert after_first > 0
    assert [result.check for result in results] == ["determinism", "state_dict"]
    assert Counting.forward_calls > after_first


def test_iter_checks_runs_what_check_variant_reports():
    report = check_variant(LooksAhead, skip=["compile"])
    results = iter_checks(LooksAhead, skip=["compile"])
    assert [(r.check, r.outcome, r.message) for r in results] == [
        (r.check, r.outcome, r.message) for r in report
    ]
    assert [r.check for r in report] == [check.name for check in CHECKS]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"variant": "casual"}, attnkit.UnknownVariantError, "did you mean 'causal'"),
        ({"kwargs": {"drop_out": 0.1}}, TypeError, "unexpected keyword argument 'drop_out'"),
        ({"checks": ["causalty"]}, ValueError, "unknown check 'causalty'"),
        ({"kwargs": {"num_heads": 3}, "variant": "multihead"}, VariantBuildError, "cannot build"),
        ({"compile_backend": "nope"}, ValueError, "unknown torch.compile backend 'nope'"),
        ({"compile_backend": "inductr"}, ValueError, "did you mean 'inductor'"),
    ],
    ids=["variant", "argument", "check", "constructor", "backend", "backend-typo"],
)
def test_iter_checks_refuses_before_any_check_runs(arguments, error, message):
    variant = arguments.pop("variant", "causal")
    with pytest.raises(error, match=re.escape(message)):
        iter_checks(variant, **arguments)  # raises here, not at the first result


def test_an_unknown_backend_is_no_matter_when_compile_does_not_run():
    assert check_variant("simple", checks=["batched_shape"], compile_backend="nope").ok
    report = check_variant("simple", checks=["compile"], skip=["compile"], compile_backend="nope")
    assert report["compile"].message == "compile: skipped on request"


def test_a_result_is_written_on_one_line_or_wrapped_under_its_detail():
    result = CheckResult(
        "kv_cache", Outcome.SKIPPED, "kv_cache: the variant does not declare supports_kv_cache"
    )
    assert result.detail == "the variant does not declare supports_kv_cache"
    line = result.format()
    indent = line.index("the variant")
    assert line == "  SKIP  kv_cache".ljust(indent) + result.detail
    names = [check.name for check in (*CHECKS, *attnkit.testing.KERNEL_CHECKS)]
    assert indent == len("  SKIP  ") + max(len(name) for name in names) + 2
    wrapped = result.format(width=indent + 20).splitlines()
    assert len(wrapped) > 1
    assert wrapped[0].startswith(line[: indent + len("the")])
    assert all(line[:indent].isspace() and not line[indent].isspace() for line in wrapped[1:])
    assert " ".join(" ".join(wrapped).split()) == " ".join(line.split())
    assert max(len(line) for line in wrapped) <= indent + 30, "the detail keeps 30 columns"
    assert CheckResult("x", Outcome.PASSED, "x: fine").format().startswith("  PASS  x ")
    assert CheckResult("x", Outcome.FAILED, "x: broken").format().startswith("  FAIL  x ")


def test_the_command_writes_results_as_the_report_does(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: one line per result
    skip = ["compile", "to_device"]
    report = check_variant("causal", skip=skip)
    capsys.readouterr()
    assert main(["check", "causal", *(f"--skip={name}" for name in skip)]) == 0
    printed = capsys.readouterr().out.splitlines()
    lines = str(report).splitlines()
    start = printed.index(lines[1])
    assert printed[start : start + len(report.results)] == lines[1:-1]
    assert printed[start + len(report.results) + 1] == lines[-1] == report.summary()


def test_a_report_writes_wrapped_results_on_request():
    report = ConformanceReport(
        "x", Working, {}, (CheckResult("causality", Outcome.PASSED, "causality: " + "ok " * 40),)
    )
    assert str(report) == report.format()
    assert report.format().splitlines()[0] == "x: no arguments"
    assert report.format(width=60).splitlines()[1:-1] == report.results[0].format(60).splitlines()


def test_the_kit_exports_its_names_from_private_modules():
    assert sorted(attnkit.testing.__all__) == sorted(
        [
            "CHECKS",
            "KERNEL_CHECKS",
            "Check",
            "CheckResult",
            "ConformanceReport",
            "Outcome",
            "VariantBuildError",
            "VariantSpec",
            "build_arguments",
            "check_kernel",
            "check_variant",
            "compile_support",
            "iter_checks",
            "iter_kernel_checks",
            "parametrize_with_checks",
            "parametrize_with_kernel_checks",
        ]
    )
    for name in attnkit.testing.__all__:
        module = getattr(getattr(attnkit.testing, name), "__module__", "attnkit.testing._")
        assert module.startswith("attnkit.testing._"), (name, module)
    assert "DEFAULT_ARGUMENTS" not in vars(attnkit.testing)


# --- Building variants ---------------------------------------------------------------------


class NeedsWidth(Working):
    """Requires an argument the kit has no default for."""

    def __init__(self, d_in: int = 8, *, width: int) -> None:
        super().__init__(d_in=d_in)
        self.chosen_width = width


def test_build_arguments_take_the_sizes_a_constructor_accepts_and_the_overrides():
    assert build_arguments("causal") == {
        k: STANDARD_SIZES[k] for k in ("d_in", "d_out", "context_length", "dropout")
    }
    assert build_arguments("causal", {"d_in": 4, "qkv_bias": True})["d_in"] == 4
    assert build_arguments(NeedsWidth, {"width": 3}) == {"d_in": STANDARD_SIZES["d_in"], "width": 3}


def test_an_unaccepted_argument_is_refused_with_a_suggestion():
    with pytest.raises(TypeError) as error:
        check_variant("causal", {"drop_out": 0.1})
    assert str(error.value).startswith(
        "causal: unexpected keyword argument 'drop_out' (did you mean 'dropout'?). causal "
        "accepts: d_in, d_out, context_length, dropout=0.0"
    )


def test_a_required_argument_without_a_default_must_be_given():
    with pytest.raises(TypeError) as error:
        check_variant(NeedsWidth)
    assert str(error.value) == (
        "NeedsWidth: missing required argument 'width', which the kit has no size for; pass it "
        "(attnkit check: --arg width=VALUE). NeedsWidth accepts: d_in=8, width"
    )
    assert check_variant(NeedsWidth, {"width": 2}, checks=["batched_shape"]).ok


def test_a_constructor_that_raises_is_reported_before_any_check():
    with pytest.raises(VariantBuildError) as error:
        check_variant("multihead", {"num_heads": 3})
    arguments = build_arguments("multihead", {"num_heads": 3})
    assert str(error.value).startswith(
        f"cannot build multihead(num_heads=3): MultiHeadAttention("
        f"{', '.join(f'{k}={v!r}' for k, v in arguments.items())}) raised ValueError: "
        f"MultiHeadAttention: d_out ({arguments['d_out']}) must be divisible by num_heads (3)"
    )
    assert isinstance(error.value.__cause__, ValueError)


def test_an_unknown_variant_or_check_is_refused():
    with pytest.raises(attnkit.UnknownVariantError, match="did you mean 'causal'"):
        check_variant("casual")
    with pytest.raises(TypeError, match="expected a variant name or an attnkit.Attention"):
        check_variant(nn.Linear)
    with pytest.raises(ValueError, match=r"unknown check 'causalty' in checks; did you mean "):
        check_variant("causal", checks=["causalty"])
    with pytest.raises(ValueError, match=r"unknown check 'nope' in skip\. Checks: batched_shape"):
        check_variant("causal", skip=["nope"])


# --- parametrize_with_checks -----------------------------------------------------------------


def test_parametrize_with_checks_makes_one_named_test_per_variant_and_check():
    mark = parametrize_with_checks(["causal", (LooksAhead, {"d_in": 4})]).mark
    names, parameters = mark.args
    assert names == ("variant", "check")
    ids = [parameter.id for parameter in parameters]
    assert ids[: len(CHECK_NAMES)] == [f"causal-{name}" for name in CHECK_NAMES]
    assert ids[len(CHECK_NAMES)] == "LooksAhead(d_in=4)-batched_shape"
    assert len(ids) == 2 * len(CHECK_NAMES)
    variant, check = parameters[len(CHECK_NAMES)].values
    assert variant == VariantSpec(LooksAhead, {"d_in": 4}) and repr(check) == "batched_shape"


def test_a_check_from_parametrize_with_checks_fails_passes_or_skips_the_test():
    parameters = {
        p.id: p.values
        for p in parametrize_with_checks(
            [LooksAhead, "self_attention"], checks=["causality", "need_weights"]
        ).mark.args[1]
    }
    variant, check = parameters["LooksAhead-causality"]
    with pytest.raises(
        pytest.fail.Exception, match=r"^LooksAhead: causality: output at position 0"
    ):
        check(variant)
    variant, check = parameters["self_attention-causality"]
    with pytest.raises(pytest.skip.Exception, match="does not declare causal = True"):
        check(variant)
    variant, check = parameters["self_attention-need_weights"]
    assert check(variant).passed


def test_a_check_from_parametrize_with_checks_reports_a_constructor_that_raises():
    mark = parametrize_with_checks([("multihead", {"num_heads": 3})], checks=["batched_shape"])
    [parameter] = mark.mark.args[1]
    variant, check = parameter.values
    with pytest.raises(VariantBuildError, match=r"^cannot build multihead\(num_heads=3\)"):
        check(variant)


def test_parametrize_with_checks_refuses_unknown_check_names():
    with pytest.raises(ValueError, match="unknown check 'causalty'"):
        parametrize_with_checks(["causal"], checks=["causalty"])
