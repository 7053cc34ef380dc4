"""The conformance checks: each a rule an attention variant must keep, and the code that tests it.

A check's function takes the `Subject` (the variant, its arguments, and helpers
that build fresh modules and seeded inputs) and returns what it verified; it
raises `Failed`, saying which rule broke and by how much, or `Skipped`, saying
why the check does not apply. `CHECKS` lists them in the order they run.
"""

from __future__ import annotations

import copy
import io
import sys
import warnings

import torch

from attnkit import _arguments
from attnkit._suggest import did_you_mean
from attnkit.cache import KVCache
from attnkit.interface import Attention
from attnkit.testing._common import (
    TOLERANCE,
    Check,
    Failed,
    Skipped,
    expect_tensor,
    first_wrong,
    largest_difference,
    shape_of,
)
from attnkit.testing._subject import BATCH, TOKENS, Subject

__all__ = ["CHECKS", "Check", "Failed", "Skipped", "compile_support", "require_backend"]


# --- The checks -----------------------------------------------------------------------------


def _check_batched_shape(subject: Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    out = expect_tensor(module(x), "forward(x)")
    batch, tokens, _ = x.shape
    if out.dim() != 3 or shape_of(out)[:2] != (batch, tokens):
        raise Failed(
            f"forward(x) with x of shape {shape_of(x)} returned shape {shape_of(out)}; expected "
            f"({batch}, {tokens}, width): one context vector per token of each sequence"
        )
    declared = getattr(module, "output_dim", None)
    width = declared if declared is not None else x.shape[-1]
    if out.shape[-1] != width:
        source = "its output_dim" if declared is not None else "the input's (output_dim is None)"
        raise Failed(
            f"forward(x) returned context vectors of width {out.shape[-1]}; expected {width}, "
            f"{source}"
        )
    if out.dtype != x.dtype:
        raise Failed(f"forward(x) returned {out.dtype} for {x.dtype} input; expected {x.dtype}")
    lengths = sorted({1, module.context_length or tokens})
    for length in lengths:
        short = subject.inputs(module, tokens=length)
        result = expect_tensor(module(short), "forward(x)")
        if shape_of(result) != (batch, length, out.shape[-1]):
            raise Failed(
                f"forward(x) with x of shape {shape_of(short)} returned shape {shape_of(result)}; "
                f"expected {(batch, length, out.shape[-1])}"
            )
    also = " and ".join(str(length) for length in lengths)
    return f"{shape_of(x)} -> {shape_of(out)}; also {also} token(s)"


def _check_unbatched_shape(subject: Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    batched = expect_tensor(module(x), "forward(x)")
    single = expect_tensor(module(x[1]), "forward(x[1])")
    if shape_of(single) != shape_of(batched)[1:]:
        raise Failed(
            f"forward(x[1]) with x[1] of shape {shape_of(x[1])} returned shape {shape_of(single)}; "
            f"expected {shape_of(batched)[1:]}, forward(x)[1] without the batch axis"
        )
    change = largest_difference(single, batched[1])
    if change is not None:
        raise Failed(
            f"forward(x[1]) differs from forward(x)[1] (max abs difference {change:.3g}); "
            f"each sequence of a batch must be processed independently of the others"
        )
    return f"{shape_of(x[1])} -> {shape_of(single)}, equal to forward(x)[1]"


def _expect_value_error(module: Attention, x: torch.Tensor, problem: str, rule: str) -> str:
    try:
        module(x)
    except ValueError as error:
        return str(error)
    except Exception as error:
        raise Failed(
            f"an input {problem} raised {type(error).__name__} ({error}); expected ValueError. "
            f"{rule}"
        ) from error
    raise Failed(f"forward accepted an input {problem}. {rule}")


def _check_rank_validation(subject: Subject) -> str:
    module = subject.build().eval()
    width = subject.width(module)
    rule = "Inputs must be (tokens, d_in) or (batch, tokens, d_in); other ranks raise ValueError."
    for shape in [(width,), (1, 2, 3, width)]:
        x = torch.randn(shape)
        _expect_value_error(module, x, f"of shape {shape} (rank {len(shape)})", rule)
    return "inputs of rank 1 and 4 raise ValueError"


def _check_d_in_validation(subject: Subject) -> str:
    module = subject.build().eval()
    if module.d_in is None:
        if "d_in" in subject.arguments:
            raise Failed(
                f"the variant takes d_in={subject.arguments['d_in']} but its d_in attribute is "
                f"None, so inputs of the wrong width are not caught; pass d_in to "
                f"attnkit.Attention.__init__"
            )
        raise Skipped("the variant accepts inputs of any width (its d_in is None)")
    wrong = module.d_in + 1
    x = torch.randn(BATCH, subject.tokens(module), wrong)
    rule = f"An input whose last axis is not d_in ({module.d_in}) must raise ValueError."
    _expect_value_error(module, x, f"of width {wrong} (shape {shape_of(x)})", rule)
    return f"an input of width {wrong} raises ValueError (d_in is {module.d_in})"


def _check_need_weights(subject: Subject) -> str:
    _require(subject, "weights")
    module = subject.build().eval()
    x = subject.inputs(module)
    batch, tokens, _ = x.shape
    result = module(x, need_weights=True)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise Failed(
            f"forward(x, need_weights=True) returned {type(result).__name__}; expected a "
            f"(context, weights) pair"
        )
    context, weights = result
    expect_tensor(context, "forward(x, need_weights=True)[0]")
    expect_tensor(weights, "forward(x, need_weights=True)[1]")
    if weights.dim() != 4 or weights.shape[0] != batch or shape_of(weights)[2:] != (tokens, tokens):
        raise Failed(
            f"weights have shape {shape_of(weights)}; expected (batch, heads, tokens, tokens) = "
            f"({batch}, heads, {tokens}, {tokens})"
        )
    change = largest_difference(context, module(x))
    if change is not None:
        raise Failed(
            f"the context returned with need_weights=True differs from forward(x) "
            f"(max abs difference {change:.3g}); need_weights must not change the result"
        )
    if (weights < 0).any() or weights.isnan().any():
        index = tuple(int(i) for i in ((weights < 0) | weights.isnan()).nonzero()[0])
        raise Failed(
            f"weight at (batch, head, query, key) = {index} is {float(weights[index]):.3g}; "
            f"attention weights must be non-negative"
        )
    sums = weights.double().sum(-1)
    # Learned attention sinks (gpt-oss) take part of each row's softmax and give no
    # value, so their rows sum to less than 1, by design: at most 1, never more.
    sinks = any(name.split(".")[-1] == "sinks" for name, _ in module.named_parameters())
    bad = (sums > 1 + 1e-4) | (sums <= 0) if sinks else (sums - 1).abs() > 1e-4
    if bad.any():
        b, h, q = (int(i) for i in bad.nonzero()[0])
        rule = "in (0, 1] (the sinks take the rest)" if sinks else "1"
        raise Failed(
            f"weights of (batch {b}, head {h}, query {q}) sum to {float(sums[b, h, q]):.4g}; "
            f"each row of attention weights must sum to {rule}"
        )
    _, unbatched = module(x[0], need_weights=True)
    if shape_of(unbatched) != shape_of(weights)[1:]:
        raise Failed(
            f"unbatched weights have shape {shape_of(unbatched)}; expected {shape_of(weights)[1:]}"
        )
    return f"weights {shape_of(weights)}, non-negative, rows sum to 1"


def _check_causality(subject: Subject) -> str:
    if not subject.cls.causal:
        raise Skipped("the variant does not declare causal = True")
    module = subject.build().eval()
    tokens = subject.tokens(module)
    if tokens < 2:
        raise Skipped(f"context_length {module.context_length} leaves no later token to perturb")
    x = subject.inputs(module, batch=1, tokens=tokens)
    before = module(x)
    generator = torch.Generator().manual_seed(99)
    for t in range(tokens - 1):
        changed = x.clone()
        noise = torch.randn(changed[:, t + 1 :].shape, generator=generator, dtype=x.dtype)
        changed[:, t + 1 :] = noise * 10
        after = module(changed)
        kept = slice(0, t + 1)  # the positions whose outputs must not move
        atol, rtol = TOLERANCE[torch.float32]
        moved = (after[0, kept] - before[0, kept]).abs() > atol + rtol * before[0, kept].abs()
        leak = moved.any(-1)  # per position
        if leak.any():
            position = int(leak.nonzero()[0])
            change = float((after[:, position] - before[:, position]).abs().max())
            raise Failed(
                f"output at position {position} changed when tokens after it were perturbed "
                f"(tokens {t + 1} to {tokens - 1}; max abs change {change:.3g}); a causal "
                f"variant's output at position t may depend only on tokens 0 to t"
            )
    seen = False  # the weights are the need_weights check's business; look only if they come
    if "weights" in subject.cls.capabilities:
        try:
            _, weights = module(x, need_weights=True)
            seen = isinstance(weights, torch.Tensor) and weights.dim() == 4
            seen = seen and shape_of(weights)[2:] == (tokens, tokens)
        except Exception:
            seen = False
    if seen:
        future = torch.ones(tokens, tokens, dtype=torch.bool).triu(1)
        ahead = (weights.abs() > 1e-6) & future
        if ahead.any():
            b, h, q, k = (int(i) for i in ahead.nonzero()[0])
            raise Failed(
                f"the weight of query {q} on key {k}, a later token, is "
                f"{float(weights[b, h, q, k]):.3g} (batch {b}, head {h}); a causal variant's "
                f"weights must be 0 above the diagonal"
            )
    return f"outputs at positions 0 to t unchanged when tokens after t change ({tokens} tokens)"


def _check_kv_cache(subject: Subject) -> str:
    if not subject.cls.supports_kv_cache:
        raise Skipped("the variant does not declare supports_kv_cache = True")
    if not subject.cls.causal:
        raise Failed(
            "the variant declares supports_kv_cache = True but not causal = True; a cache of "
            "earlier tokens' keys and values is only valid when earlier outputs ignore later tokens"
        )
    module = subject.build().eval()
    tokens = subject.tokens(module)
    x = subject.inputs(module, tokens=tokens)
    chunks = [min(2, tokens)] + [1] * (tokens - min(2, tokens))  # a prompt, then one at a time
    with torch.no_grad():
        full = module(x)
        cache = KVCache()
        pieces, start = [], 0
        for size in chunks:
            pieces.append(expect_tensor(module(x[:, start : start + size], cache=cache), "forward"))
            start += size
    cached = torch.cat(pieces, dim=1)
    atol, rtol = TOLERANCE[torch.float32]
    wrong = ((cached - full).abs() > atol + rtol * full.abs()).any(-1).any(0)
    if wrong.any():
        position = int(wrong.nonzero()[0])
        change = float((cached[:, position] - full[:, position]).abs().max())
        raise Failed(
            f"fed through a KVCache ({chunks[0]} tokens, then one at a time), the output at "
            f"position {position} differs from the full sequence's by up to {change:.3g}; "
            f"forward(x, cache=...) must equal the matching rows of forward on all tokens"
        )
    if cache.length != tokens:
        raise Failed(f"after {tokens} tokens the cache reports length {cache.length}")
    return f"{tokens} tokens fed through a KVCache ({chunks[0]}, then 1 at a time) match"


# --- Declared capabilities: padding, fully masked rows, cached padding, positions -----------


def _require(subject: Subject, *capabilities: str) -> None:
    """Skip, naming them, unless the variant declares every one of ``capabilities``."""
    missing = [c for c in capabilities if c not in subject.cls.capabilities]
    if missing:
        names = " and ".join(repr(c) for c in missing)
        plural = "capabilities" if len(missing) > 1 else "capability"
        raise Skipped(f"the variant does not declare the {names} {plural}")


def _positions(subject: Subject, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``position_ids`` for a padded batch, for a variant that declares them; else nothing.

    Hugging Face's convention: real tokens count 0, 1, ... from the first one, whichever
    side the padding is on; padding positions repeat a neighbour's.
    """
    if "position_ids" not in subject.cls.capabilities:
        return {}
    return {"position_ids": (attention_mask.long().cumsum(-1) - 1).clamp(min=0)}


def _padded(
    sequences: list[torch.Tensor], width: int, side: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequences padded on ``side`` to ``width`` tokens with large random padding.

    Returns ``x (batch, width, d)`` and the bool ``attention_mask (batch, width)``.
    """
    generator = torch.Generator().manual_seed(seed)
    batch, d = len(sequences), sequences[0].shape[-1]
    x = torch.randn(batch, width, d, generator=generator, dtype=torch.float64) * 10
    x = x.to(sequences[0].dtype)
    mask = torch.zeros(batch, width, dtype=torch.bool)
    for b, sequence in enumerate(sequences):
        start = 0 if side == "right" else width - len(sequence)
        x[b, start : start + len(sequence)] = sequence
        mask[b, start : start + len(sequence)] = True
    return x, mask


def _check_padding(subject: Subject) -> str:
    _require(subject, "attention_mask")
    module = subject.build().eval()
    longest = subject.tokens(module, TOKENS + 2)
    if longest < 2:
        raise Skipped(f"context_length {module.context_length} leaves no room for a padding token")
    narrower = max(2, longest - 1)  # the two layouts pad to different widths
    lengths = [narrower - 1, max(1, narrower - 3)]
    source = subject.inputs(module, tokens=lengths[0])
    sequences = [source[0], source[1, : lengths[1]]]
    alone = [expect_tensor(module(s[None]), "forward(x)")[0] for s in sequences]
    for b, sequence in enumerate(sequences):
        ones = torch.ones(1, len(sequence), dtype=torch.bool)
        out = module(sequence[None], attention_mask=ones, **_positions(subject, ones))
        change = largest_difference(
            expect_tensor(out, "forward(x, attention_mask=...)")[0], alone[b]
        )
        if change is not None:
            raise Failed(
                f"an attention_mask of all ones changed the output of a {len(sequence)}-token "
                f"sequence by up to {change:.3g}; without padding, attention_mask must change "
                f"nothing"
            )
    layouts = []
    for side, width, seed, dtype in [
        ("right", narrower, 11, torch.bool),
        ("left", longest, 12, torch.long),  # 0/1 integers this time
    ]:
        x, mask = _padded(sequences, width, side, seed)
        layouts.append((side, width, x, mask, mask.to(dtype), _positions(subject, mask)))
    for side, width, x, mask, attention_mask, positions in layouts:
        out = expect_tensor(
            module(x, attention_mask=attention_mask, **positions), "forward(x, attention_mask=...)"
        )
        if out.dim() != 3 or shape_of(out)[:2] != (BATCH, width):
            raise Failed(
                f"with {side} padding, forward(x, attention_mask=...) with x of shape "
                f"{shape_of(x)} returned shape {shape_of(out)}; expected ({BATCH}, {width}, width)"
            )
        for b, sequence in enumerate(sequences):
            pads = width - len(sequence)
            wrong = first_wrong(out[b, mask[b]], alone[b], TOLERANCE[torch.float32])
            if wrong is not None:
                (token,), _, change = wrong
                raise Failed(
                    f"with {side} padding ({pads} random padding token(s) in sequence {b}), the "
                    f"output at real token {token} differs from the sequence's own output "
                    f"(unpadded, alone) by up to {change:.3g}; outputs at real tokens must not "
                    f"depend on the padding"
                )
            bad = ~out[b, ~mask[b]].isfinite().all(-1)
            if bad.any():
                position = int((~mask[b]).nonzero()[int(bad.nonzero()[0])])
                raise Failed(
                    f"with {side} padding, the output at padding position {position} of "
                    f"sequence {b} is not finite; outputs at padding positions must be finite"
                )
    weights_too = "weights" in subject.cls.capabilities
    for side, width, x, mask, attention_mask, positions in layouts if weights_too else []:
        result = module(x, need_weights=True, attention_mask=attention_mask, **positions)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise Failed(
                f"forward(x, need_weights=True, attention_mask=...) returned "
                f"{type(result).__name__}; expected a (context, weights) pair"
            )
        weights = expect_tensor(result[1], "forward(x, need_weights=True, ...)[1]")
        if weights.dim() != 4 or (weights.shape[0], *weights.shape[2:]) != (BATCH, width, width):
            raise Failed(
                f"with {side} padding, weights have shape {shape_of(weights)}; expected "
                f"(batch, heads, tokens, tokens) = ({BATCH}, heads, {width}, {width})"
            )
        leak = (weights != 0) & ~mask[:, None, None, :]
        if leak.any():
            b, h, q, k = (int(i) for i in leak.nonzero()[0])
            raise Failed(
                f"with {side} padding, query {q} of sequence {b} (head {h}) gives padding key "
                f"{k} the weight {float(weights[b, h, q, k]):.3g}; padding keys must get no "
                f"weight"
            )
    weights_note = "; padding keys get no weight" if weights_too else ""
    return (
        f"sequences of {lengths[0]} and {lengths[1]} tokens padded right to {narrower} and left "
        f"to {longest} with random padding give their unpadded outputs at real tokens; "
        f"finite outputs at padding{weights_note}"
    )


def _check_masked_rows(subject: Subject) -> str:
    _require(subject, "attention_mask")
    module = subject.build().eval()
    tokens = subject.tokens(module)
    pads = tokens // 2
    mask = torch.ones(BATCH, tokens, dtype=torch.bool)
    mask[0, :pads] = False  # left padding: a causal query here sees only padding
    mask[1] = False  # all padding: no query has a key
    if subject.cls.causal:
        blind = mask.cumsum(-1) == 0
        why = {0: f"sequence 0 has {pads} left padding tokens, all a causal query there sees"}
    else:
        blind = ~mask.any(-1, keepdim=True).expand(BATCH, tokens)
        why = {}
    why[1] = "sequence 1 is all padding"
    positions = _positions(subject, mask)
    first = subject.inputs(module, tokens=tokens, seed=21)
    second = subject.inputs(module, tokens=tokens, seed=22) * 3
    outputs = [
        expect_tensor(module(x, attention_mask=mask, **positions), "forward(x, attention_mask=...)")
        for x in (first, second)
    ]
    rows = [(int(b), int(t)) for b, t in blind.nonzero()]
    for b, t in rows:
        place = f"the output at position {t} of sequence {b} ({why[b]})"
        if not outputs[0][b, t].isfinite().all():
            raise Failed(
                f"{place} is not finite (NaN or inf); a query whose every key is masked must "
                f"get a zero context, not NaN"
            )
        change = largest_difference(outputs[1][b, t], outputs[0][b, t])
        if change is not None:
            raise Failed(
                f"{place} changed by up to {change:.3g} when the inputs changed; a query whose "
                f"every key is masked must get a zero context, so its output cannot depend on "
                f"the inputs (a uniform average of the masked values is wrong)"
            )
    weights_note = ""
    if "weights" in subject.cls.capabilities:
        result = module(first, need_weights=True, attention_mask=mask, **positions)
        weights = expect_tensor(result[1], "forward(x, need_weights=True, ...)[1]")
        for b, t in rows:
            total = weights[b, :, t].double().abs().sum(-1)
            if not (total == 0).all():
                h = int((total != 0).nonzero()[0])
                raise Failed(
                    f"the weights of query {t} of sequence {b} (head {h}; {why[b]}) sum to "
                    f"{float(total[h]):.3g}; a query whose every key is masked must get weights "
                    f"of 0"
                )
        weights_note = ", zero weights"
    with torch.enable_grad():
        x = first.clone().requires_grad_(True)
        out = expect_tensor(module(x, attention_mask=mask, **positions), "forward(x, ...)")
        (out.sum() + out.square().sum()).backward()
    gradients = [("the input", x.grad)] + [
        (f"parameter {name!r}", p.grad) for name, p in module.named_parameters()
    ]
    for name, gradient in gradients:
        if gradient is not None and not gradient.isfinite().all():
            raise Failed(
                f"with queries whose every key is masked, {name} got a non-finite gradient; "
                f"fully masked rows must give finite gradients (zeros, as PyTorch's SDPA does)"
            )
    return (
        f"{len(rows)} queries with every key masked: finite outputs that do not depend on the "
        f"inputs{weights_note}, finite gradients"
    )


def _check_kv_cache_padding(subject: Subject) -> str:
    _require(subject, "kv_cache", "attention_mask")
    module = subject.build().eval()
    tokens = subject.tokens(module)
    if tokens < 3:
        raise Skipped(
            f"context_length {module.context_length} leaves no room for padding, a prompt and "
            f"a new token"
        )
    pads = min(2, tokens - 2)
    mask = torch.ones(BATCH, tokens, dtype=torch.bool)
    mask[0, :pads] = False  # left padding, as a batch of prompts for generation has
    x = subject.inputs(module, tokens=tokens)
    x[0, :pads] = 10 * subject.inputs(module, batch=1, tokens=pads, seed=31)[0]
    positions = _positions(subject, mask)
    full = expect_tensor(module(x, attention_mask=mask, **positions), "forward(x, ...)")
    prompt = pads + 1
    chunks = [prompt] + [1] * (tokens - prompt)
    cache = KVCache()
    pieces, start = [], 0
    for size in chunks:
        stop = start + size
        step_positions = {name: p[:, start:stop] for name, p in positions.items()}
        piece = module(
            x[:, start:stop], attention_mask=mask[:, :stop], cache=cache, **step_positions
        )
        pieces.append(expect_tensor(piece, "forward(x, attention_mask=..., cache=...)"))
        start = stop
    cached = torch.cat(pieces, dim=1)
    for b in range(BATCH):
        wrong = first_wrong(cached[b, mask[b]], full[b, mask[b]], TOLERANCE[torch.float32])
        if wrong is not None:
            (token,), _, change = wrong
            position = int(mask[b].nonzero()[token])
            raise Failed(
                f"fed through a KVCache ({prompt} tokens, then one at a time) with a left-padded "
                f"batch (attention_mask covering the cached and new tokens at each step), the "
                f"output at position {position} of sequence {b}, a real token, differs from the "
                f"full pass's by up to {change:.3g}; cached decoding must equal the full pass at "
                f"real tokens"
            )
    if not cached[~mask].isfinite().all():
        raise Failed(
            "fed through a KVCache with a left-padded batch, an output at a padding position "
            "is not finite; outputs at padding positions must be finite"
        )
    return (
        f"a batch with {pads} left padding tokens fed through a KVCache ({prompt} tokens, then 1 "
        f"at a time) matches the full pass at real tokens"
    )


def _check_position_ids(subject: Subject) -> str:
    _require(subject, "position_ids")
    module = subject.build().eval()
    x = subject.inputs(module)
    batch, tokens, _ = x.shape
    implicit = expect_tensor(module(x), "forward(x)")
    default = torch.arange(tokens).expand(batch, tokens)
    explicit = expect_tensor(module(x, position_ids=default), "forward(x, position_ids=...)")
    change = largest_difference(explicit, implicit)
    if change is not None:
        raise Failed(
            f"forward(x, position_ids=arange({tokens})) differs from forward(x) by up to "
            f"{change:.3g}; by default the positions are 0, 1, ..., tokens - 1"
        )
    cached_note = ""
    if "kv_cache" in subject.cls.capabilities and tokens >= 2:
        prompt = min(2, tokens - 1)
        implicit_cache, explicit_cache = KVCache(), KVCache()
        module(x[:, :prompt], cache=implicit_cache)
        module(x[:, :prompt], cache=explicit_cache, position_ids=default[:, :prompt])
        for t in range(prompt, tokens):
            step = x[:, t : t + 1]
            without = expect_tensor(module(step, cache=implicit_cache), "forward(x, cache=...)")
            given = module(step, cache=explicit_cache, position_ids=default[:, t : t + 1])
            change = largest_difference(expect_tensor(given, "forward(x, cache=...)"), without)
            if change is not None:
                raise Failed(
                    f"with a KVCache holding {t} tokens, forward(x, cache=..., position_ids="
                    f"[[{t}]]) differs from forward(x, cache=...) by up to {change:.3g}; by "
                    f"default the positions continue from the cache's length"
                )
        cached_note = f"; so do positions {prompt} onwards after a KVCache's {prompt} tokens"
    for wrong in [(batch, tokens + 1), (batch + 1, tokens), (tokens,)]:
        positions = torch.zeros(wrong, dtype=torch.long)
        try:
            module(x, position_ids=positions)
        except ValueError:
            continue
        except Exception as error:
            raise Failed(
                f"position_ids of shape {wrong} for an input of shape {shape_of(x)} raised "
                f"{type(error).__name__} ({error}); expected ValueError"
            ) from error
        raise Failed(
            f"forward accepted position_ids of shape {wrong} for an input of shape {shape_of(x)}; "
            f"position_ids must be (batch, tokens) = {(batch, tokens)}, and other shapes raise "
            f"ValueError"
        )
    return (
        f"position_ids=arange({tokens}) gives the output of none{cached_note}; wrong shapes "
        f"raise ValueError"
    )


def _check_determinism(subject: Subject) -> str:
    overrides = {}
    if "dropout" in _arguments.accepted_arguments(subject.cls) and (
        "dropout" not in subject.user_arguments
    ):
        overrides["dropout"] = 0.5  # eval mode must switch it off
    module = subject.build(**overrides).eval()
    x = subject.inputs(module)
    first, second = module(x), module(x)
    if not torch.equal(first, second):
        change = float((first - second).abs().max())
        with_dropout = " with dropout=0.5" if overrides else ""
        raise Failed(
            f"two forward passes in eval mode{with_dropout} differ (max abs difference "
            f"{change:.3g}); in eval mode, dropout and any other randomness must be off"
        )
    return "two forward passes in eval mode agree exactly" + (
        " (built with dropout=0.5)" if overrides else ""
    )


@torch.enable_grad()
def _check_gradients(subject: Subject) -> str:
    module = subject.build().train()
    x = subject.inputs(module).requires_grad_(True)
    out = expect_tensor(module(x), "forward(x)")
    if not out.requires_grad:
        raise Failed("the output does not require grad; forward must not detach its result")
    out.square().sum().backward()
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    for name, parameter in trainable:
        if parameter.grad is None:
            raise Failed(
                f"parameter {name!r} got no gradient; every trainable parameter must take part "
                f"in forward (freeze it with requires_grad_(False) if that is intended)"
            )
        if not parameter.grad.isfinite().all():
            raise Failed(f"parameter {name!r} got a non-finite gradient")
    if x.grad is None or not x.grad.isfinite().all() or not x.grad.abs().sum() > 0:
        raise Failed("the input got no (finite, non-zero) gradient; the output must depend on it")
    if not trainable:
        return "gradients reach the input (the variant has no trainable parameters)"
    return f"gradients reach the input and all {len(trainable)} trainable parameters"


def _check_dtype(subject: Subject, dtype: torch.dtype) -> str:
    module = subject.build().eval()
    reference_module = copy.deepcopy(module).to(torch.float64)
    x = subject.inputs(module, dtype=torch.float64)
    reference = expect_tensor(reference_module(x), "forward(x) in float64")
    if dtype == torch.float64:
        out, compared_with = reference, expect_tensor(module(x.float()), "forward(x)")
    else:
        converted = copy.deepcopy(module).to(dtype)
        out = expect_tensor(converted(x.to(dtype)), f"forward(x) in {dtype}")
        compared_with = out
    if out.dtype != dtype:
        raise Failed(
            f"a module and input in {dtype} gave output in {out.dtype}; the output must keep "
            f"the input's dtype"
        )
    if not out.isfinite().all():
        raise Failed(f"the output in {dtype} has NaN or infinite values")
    # float64 is the reference: float32 must agree with it to float32's precision, and
    # bfloat16 to bfloat16's.
    precision = torch.float32 if dtype == torch.float64 else dtype
    change = largest_difference(compared_with, reference, precision)
    if change is not None:
        what = "float32" if dtype == torch.float64 else str(dtype).removeprefix("torch.")
        atol, rtol = TOLERANCE[precision]
        raise Failed(
            f"the {what} output differs from the float64 output of the same weights by up to "
            f"{change:.3g} (tolerance atol={atol:g}, rtol={rtol:g})"
        )
    atol, rtol = TOLERANCE[precision]
    if dtype == torch.float64:
        return f"float64 output; float32 agrees with it within atol={atol:g}, rtol={rtol:g}"
    return f"bfloat16 output, within atol={atol:g}, rtol={rtol:g} of the float64 output"


def _check_float64(subject: Subject) -> str:
    return _check_dtype(subject, torch.float64)


def _check_bfloat16(subject: Subject) -> str:
    return _check_dtype(subject, torch.bfloat16)


def _check_state_dict(subject: Subject) -> str:
    original = subject.build(seed=0).eval()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = subject.build(seed=1).eval()
    try:
        restored.load_state_dict(torch.load(buffer, weights_only=True))
    except Exception as error:
        raise Failed(
            f"load_state_dict of a saved state_dict raised {type(error).__name__}: {error}"
        ) from error
    x = subject.inputs(original)
    before, after = original(x), restored(x)
    if not torch.equal(before, after):
        change = float((before - after).abs().max())
        raise Failed(
            f"a module built with another seed and loaded from the state_dict gives different "
            f"outputs (max abs difference {change:.3g}); everything forward depends on must be "
            f"a parameter or a persistent buffer"
        )
    return f"saved and loaded {len(original.state_dict())} tensor(s); outputs identical"


def compile_support(backend: str = "inductor") -> str | None:
    """Why ``torch.compile`` cannot run here with ``backend``, or ``None`` if it can.

    Checks that this Python and platform support ``torch.compile`` at all, and
    that the ``inductor`` backend finds the C++ compiler it needs on the CPU.
    """
    try:
        import torch._dynamo
    except Exception as error:  # pragma: no cover - depends on the platform
        return f"torch._dynamo cannot be imported here ({type(error).__name__}: {error})"
    is_supported = getattr(torch._dynamo, "is_dynamo_supported", None)
    if is_supported is not None and not is_supported():
        version = ".".join(map(str, sys.version_info[:3]))
        return (
            f"torch {torch.__version__} does not support torch.compile on Python {version} "
            f"({sys.platform})"
        )
    if backend == "inductor":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
        except ImportError:  # pragma: no cover - the helper moved; let compile decide
            return None
        try:
            get_cpp_compiler()
        except Exception as error:
            return (
                f"the inductor backend needs a C++ compiler on the CPU and found none "
                f"({type(error).__name__}: {error}); install one (gcc or clang), or use "
                f"another backend, such as 'aot_eager'"
            )
    return None


def require_backend(backend: str) -> None:
    """Raise `ValueError` if ``torch.compile`` knows no backend named ``backend``.

    Nothing is checked where `compile_support` says compiling cannot run here:
    the ``compile`` check is skipped there, saying why.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        if compile_support(backend) is not None:
            return
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        hint = did_you_mean(backend, backends)
        raise ValueError(
            f"unknown torch.compile backend {backend!r}{'; ' + hint if hint else ''}; the usual "
            f"ones are inductor (the default), aot_eager and eager; all: {', '.join(backends)}"
        )


def _check_compile(subject: Subject) -> str:
    backend = subject.compile_backend
    with warnings.catch_warnings():
        # torch's own modules warn about their deprecations as the compiler imports them.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        reason = compile_support(backend)
        if reason is not None:
            raise Skipped(reason)
        import torch._dynamo

        module = subject.build().eval()
        x = subject.inputs(module)
        torch._dynamo.reset()
        try:
            with torch.no_grad():
                compiled = torch.compile(module, fullgraph=True, backend=backend)
                try:
                    out = compiled(x)
                except Exception as error:
                    lines = str(error).strip().splitlines()
                    raise Failed(
                        f"torch.compile(fullgraph=True, backend={backend!r}) could not compile "
                        f"forward: {type(error).__name__}: {lines[0][:300] if lines else ''}; "
                        f"forward must trace as one graph (no data-dependent Python control "
                        f"flow, .item(), print or other graph breaks)"
                    ) from error
                expected = module(x)
        finally:
            torch._dynamo.reset()
    out = expect_tensor(out, "the compiled forward(x)")
    if shape_of(out) != shape_of(expected):
        raise Failed(
            f"the compiled module returned {shape_of(out)}; eager gives {shape_of(expected)}"
        )
    change = largest_difference(out, expected)
    if change is not None:
        raise Failed(
            f"the compiled module's output differs from eager by up to {change:.3g} "
            f"(backend {backend!r}); compiled and eager forward must compute the same"
        )
    return f"compiled with fullgraph=True (backend {backend!r}); output equal to eager"


def _target_device() -> torch.device:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return torch.device(accelerator.current_accelerator())  # pragma: no cover
    if torch.cuda.is_available():  # pragma: no cover - torch < 2.6 with a GPU
        return torch.device("cuda")
    return torch.device("meta")


def _check_to_device(subject: Subject) -> str:
    module = subject.build().eval()
    for prefix, submodule in module.named_modules():
        for attribute, value in vars(submodule).items():
            if isinstance(value, torch.Tensor):
                name = f"{prefix}.{attribute}" if prefix else attribute
                raise Failed(
                    f"tensor attribute {name!r} is neither a parameter nor a buffer, so .to() "
                    f"leaves it behind; register it with register_buffer (or nn.Parameter)"
                )
    device = _target_device()
    x = subject.inputs(module)
    expected = module(x)
    moved = module.to(device)
    for name, tensor in [*moved.named_parameters(), *moved.named_buffers()]:
        if tensor.device.type != device.type:
            raise Failed(f"after .to({device.type!r}), {name!r} is still on {tensor.device}")
    try:
        out = moved(x.to(device))
    except Exception as error:
        raise Failed(
            f"after .to({device.type!r}), forward on a {device.type} input raised "
            f"{type(error).__name__}: {error}; forward must create its tensors on the input's "
            f"device"
        ) from error
    out = expect_tensor(out, f"forward(x) on {device.type}")
    if out.device.type != device.type:
        raise Failed(f"after .to({device.type!r}), forward returned a tensor on {out.device}")
    if device.type == "meta":
        if shape_of(out) != shape_of(expected):
            raise Failed(
                f"on the meta device forward returned {shape_of(out)}, not {shape_of(expected)}"
            )
        return "parameters, buffers and forward all move to the 'meta' device (no accelerator here)"
    # Accelerator kernels (fused attention, another summation order) differ a little more.
    change = largest_difference(out.cpu(), expected, tolerance=(1e-4, 1e-4))  # pragma: no cover
    if change is not None:  # pragma: no cover
        raise Failed(f"on {device} the output differs from the CPU's by up to {change:.3g}")
    return f"parameters, buffers and forward all move to {device}"  # pragma: no cover


CHECKS: tuple[Check, ...] = (
    Check(
        "batched_shape",
        "forward((batch, tokens, d_in)) returns (batch, tokens, output_dim) in the input's dtype.",
        _check_batched_shape,
    ),
    Check(
        "unbatched_shape",
        "forward((tokens, d_in)) returns forward(x[None])[0]: sequences are independent.",
        _check_unbatched_shape,
    ),
    Check(
        "rank_validation",
        "Inputs of rank other than 2 or 3 raise ValueError.",
        _check_rank_validation,
    ),
    Check(
        "d_in_validation",
        "An input whose width is not d_in raises ValueError.",
        _check_d_in_validation,
    ),
    Check(
        "need_weights",
        "A variant declaring weights: need_weights=True returns (context, weights (batch, heads, "
        "tokens, tokens)), weights non-negative with rows summing to 1, context unchanged.",
        _check_need_weights,
    ),
    Check(
        "causality",
        "A variant declaring causal = True: output at position t ignores tokens after t.",
        _check_causality,
    ),
    Check(
        "kv_cache",
        "A variant declaring supports_kv_cache = True: tokens fed through a KVCache give the "
        "outputs of the whole sequence at once.",
        _check_kv_cache,
    ),
    Check(
        "padding",
        "A variant declaring attention_mask: the same sequences padded left and right, by "
        "different amounts with random padding, give their unpadded outputs at real tokens "
        "(float32, 1e-5) and finite outputs at padding; padding keys get no weight.",
        _check_padding,
    ),
    Check(
        "masked_rows",
        "A variant declaring attention_mask: a query whose every key is masked gets a zero "
        "context (its output finite and independent of the inputs, its weights 0), and "
        "gradients stay finite.",
        _check_masked_rows,
    ),
    Check(
        "kv_cache_padding",
        "A variant declaring kv_cache and attention_mask: a left-padded batch fed through a "
        "KVCache (attention_mask covering cached and new tokens) gives the full pass's outputs "
        "at real tokens.",
        _check_kv_cache_padding,
    ),
    Check(
        "position_ids",
        "A variant declaring position_ids: passing the default positions (continuing from the "
        "cache's length) equals passing none; position_ids of the wrong shape raise ValueError.",
        _check_position_ids,
    ),
    Check(
        "determinism", "In eval mode, forward is deterministic (dropout off).", _check_determinism
    ),
    Check(
        "gradients",
        "Gradients reach the input and every trainable parameter.",
        _check_gradients,
    ),
    Check(
        "float64",
        "In float64 the output is float64 and matches float32 to float32 precision.",
        _check_float64,
    ),
    Check(
        "bfloat16",
        "In bfloat16 the output is bfloat16, finite, and close to the float64 output.",
        _check_bfloat16,
    ),
    Check(
        "state_dict",
        "Loading a saved state_dict into a fresh module reproduces the outputs exactly.",
        _check_state_dict,
    ),
    Check(
        "compile",
        "torch.compile(fullgraph=True) compiles forward, and its output equals eager.",
        _check_compile,
    ),
    Check(
        "to_device",
        "The module moves with .to(): no stray tensor attributes; forward runs on the new device.",
        _check_to_device,
    ),
)
