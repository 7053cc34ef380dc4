"""Train a small character-level GPT on "The Verdict", plot its loss, then sample from it.

The attention is chosen by name, from any registered causal variant:

    python examples/train_gpt.py                           # multihead, about two minutes on 2 cores
    python examples/train_gpt.py --attention causal
    python examples/train_gpt.py --attention window --attention-option window=16

``--save PATH`` keeps the trained model, its config and its vocabulary in one small
file that `load_checkpoint` reads back; the docs' trained heads come from

    python examples/train_gpt.py --emb-dim 64 --n-layers 2 --steps 1500 \\
        --save examples/checkpoints/verdict-heads.pt

The same script trains data-parallel under torchrun (see docs/distributed.md):

    torchrun --standalone --nproc-per-node 2 examples/train_gpt.py

Each step draws one global batch of ``--batch-size`` windows from the text with a
generator seeded identically on every rank; each of the ``world_size`` ranks
trains on its own slice of it, and DistributedDataParallel averages the
gradients, so the run follows the same trajectory whatever the number of ranks.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from attnkit.models import GPTModel, causal_variants, generate

TEXT = Path(__file__).parent / "data" / "the-verdict.txt"
DEFAULT_OUTPUT = Path(__file__).parent / "output"


def load_text(path: Path = TEXT) -> str:
    """The story, without the note at the top of the file (its lines start with ``# ``)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    start = 0
    while start < len(lines) and lines[start].startswith("# "):
        start += 1
    return "\n".join(lines[start:]).strip("\n")


class CharTokenizer:
    """Maps each distinct character of a text to an id, in sorted order."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.ids = {char: index for index, char in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self.ids))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return [self.ids[char] for char in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[index] for index in ids)


def random_batch(
    data: torch.Tensor, batch_size: int, context_length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``data``: inputs and targets, each ``(batch, tokens)``.

    The targets are the inputs shifted by one token: position ``t`` is trained to
    predict token ``t + 1``.
    """
    starts = torch.randint(len(data) - context_length, (batch_size,), generator=generator)
    windows = torch.stack([data[start : start + context_length + 1] for start in starts])
    return windows[:, :-1], windows[:, 1:]


def local_part(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s equal share of a global batch (rows ``rank * n`` to ``(rank + 1) * n``)."""
    if len(batch) % world_size:
        raise ValueError(
            f"the batch size ({len(batch)}) must be divisible by the number of processes "
            f"({world_size})"
        )
    size = len(batch) // world_size
    return batch[rank * size : (rank + 1) * size]


def loss_of(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions over every position."""
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    context_length: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train for ``steps`` steps; return the loss of each step's global batch.

    Args:
        model: The model, or its `DistributedDataParallel` wrapper when ``world_size > 1``.
        optimizer: Over the model's parameters.
        data: The training text as token ids, ``(tokens,)``, on the CPU; batches move
            to the model's device.
        steps: How many optimizer steps.
        batch_size: Windows per global batch, divisible by ``world_size``.
        context_length: Tokens per window.
        seed: Seeds the batch generator, the same on every rank.
        rank: This process's rank.
        world_size: The number of processes.
        progress: Show a tqdm progress bar.
        on_step: Called as ``on_step(step, loss)`` after each step, if given.
    """
    from tqdm import tqdm

    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for step in tqdm(range(steps), desc="training", disable=not progress):
        inputs, targets = random_batch(data, batch_size, context_length, generator)
        inputs = local_part(inputs, rank, world_size).to(device)
        targets = local_part(targets, rank, world_size).to(device)
        loss = loss_of(model, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP, also averages the gradients across ranks
        optimizer.step()
        reported = loss.detach().clone()
        if world_size > 1:  # the global batch's loss: the mean of the ranks' equal shares
            dist.all_reduce(reported)
            reported /= world_size
        losses.append(reported.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return losses


@torch.no_grad()
def evaluate(
    model: nn.Module, data: torch.Tensor, *, batches: int, batch_size: int, context_length: int
) -> float:
    """Mean loss over ``batches`` fixed random batches of ``data`` (the same ones every call)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(batches):
        inputs, targets = random_batch(data, batch_size, context_length, generator)
        total += loss_of(model, inputs.to(device), targets.to(device)).item()
    model.train(was_training)
    return total / batches


def fingerprint(model: nn.Module) -> float:
    """The sum of every parameter, in float64: tells apart two sets of initial weights."""
    return sum(float(p.detach().double().sum()) for p in model.parameters())


def save_checkpoint(
    path: Path,
    model: GPTModel,
    tokenizer: CharTokenizer,
    *,
    seed: int,
    initial_fingerprint: float,
    summary: Mapping[str, Any],
) -> None:
    """Save the model's weights and config, the vocabulary and how the run was made.

    The random initial weights are not stored: ``seed`` rebuilds them (see
    `load_checkpoint`), and ``initial_fingerprint`` checks that it did.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "config": dict(model.config),
        "chars": "".join(tokenizer.chars),
        "state_dict": {name: t.detach().cpu() for name, t in model.state_dict().items()},
        "seed": seed,
        "initial_fingerprint": initial_fingerprint,
        **summary,
    }
    torch.save(checkpoint, path)


def load_checkpoint(
    path: Path, *, initial: bool = False
) -> tuple[GPTModel, CharTokenizer, dict[str, Any]]:
    """A model saved by ``--save``, in eval mode, its tokenizer, and the checkpoint's other entries.

    With ``initial=True``, the model is the same network before training: rebuilt
    from the run's seed, and checked against the fingerprint of the weights the
    run started from. Either way, torch's random generator is left seeded with the
    run's seed, as the run's was when it built the model.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    tokenizer = CharTokenizer(checkpoint.pop("chars"))
    state_dict = checkpoint.pop("state_dict")
    torch.manual_seed(checkpoint["seed"])  # as main() does before building the model
    model = GPTModel(checkpoint["config"])
    if initial:
        found, expected = fingerprint(model), checkpoint["initial_fingerprint"]
        if not math.isclose(found, expected, rel_tol=1e-9, abs_tol=1e-6):
            raise RuntimeError(
                f"{path}: seed {checkpoint['seed']} rebuilt other initial weights than the run "
                f"started from (fingerprint {found!r}, expected {expected!r})"
            )
    else:
        model.load_state_dict(state_dict)
    return model.eval(), tokenizer, checkpoint


# --8<-- [start:init_distributed]
def init_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """Join the process group torchrun set up, if any; return ``(rank, world_size, device)``.

    torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT``; ``init_process_group`` reads them. GPUs use the nccl backend,
    one GPU per process (``LOCAL_RANK``); the CPU uses gloo.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    if world_size == 1:
        return 0, 1, chosen
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), world_size, chosen


# --8<-- [end:init_distributed]


def plot_losses(
    train_losses: Sequence[float],
    validation: Sequence[tuple[int, float]],
    path: Path,
    title: str = "",
) -> None:
    """Save the training loss per step and the validation loss where measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), layout="constrained")
    axes.plot(range(1, len(train_losses) + 1), train_losses, label="training", linewidth=1)
    if validation:
        steps, losses = zip(*validation, strict=True)
        axes.plot(steps, losses, "o-", label="validation")
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats per character)")
    axes.legend()
    figure.savefig(path)
    plt.close(figure)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--attention",
        default="multihead",
        help=f"a registered causal variant: {', '.join(causal_variants())} (default: multihead)",
    )
    parser.add_argument(
        "--attention-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further argument of the attention, e.g. window=16 (repeatable)",
    )
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32, help="global, over all processes")
    parser.add_argument("--context-length", type=int, default=64)
    parser.add_argument("--emb-dim", type=int, default=96)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--n-layers", type=int, default=3)
    parser.add_argument("--drop-rate", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=100, help="steps between validations")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="folder for loss.png (default: examples/output)",
    )
    parser.add_argument("--prompt", default="I HAD always thought")
    parser.add_argument("--sample-tokens", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument(
        "--save",
        type=Path,
        metavar="PATH",
        help="save the trained model, its config and vocabulary to PATH (see load_checkpoint)",
    )
    return parser.parse_args(argv)


def attention_options(pairs: Sequence[str]) -> dict[str, object]:
    """``["window=16", "kernel='explicit'"]`` -> ``{"window": 16, ...}``."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"--attention-option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value  # a bare word, such as explicit
    return options


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Run the example; return its results (losses, the sample, the plot's path)."""
    args = parse_arguments(argv)
    rank, world_size, device = init_distributed(args.device)
    torch.manual_seed(args.seed)  # the same initial weights on every rank

    text = load_text()
    tokenizer = CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text))
    split = int(0.9 * len(data))
    train_data, validation_data = data[:split], data[split:]

    config = {
        "vocab_size": tokenizer.vocab_size,
        "context_length": args.context_length,
        "emb_dim": args.emb_dim,
        "n_heads": args.n_heads,
        "n_layers": args.n_layers,
        "drop_rate": args.drop_rate,
        "qkv_bias": False,
        "attention": args.attention,
        "attention_options": attention_options(args.attention_option),
    }
    model = GPTModel(config).to(device)
    initial_fingerprint = fingerprint(model)
    trained = model
    if world_size > 1:
        trained = DistributedDataParallel(model)
        torch.manual_seed(args.seed + rank)  # but each rank its own dropout masks
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)

    main_process = rank == 0
    if main_process:
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{parameters:,} parameters, {world_size} process(es) on {device}; config: {config}")
    evaluation = {"batches": 8, "batch_size": 32, "context_length": args.context_length}
    validation: list[tuple[int, float]] = []

    def validate(step: int, loss: float) -> None:
        if main_process and ((step + 1) % args.eval_every == 0 or step + 1 == args.steps):
            validation.append((step + 1, evaluate(model, validation_data, **evaluation)))

    started = time.perf_counter()
    losses = train(
        trained,
        optimizer,
        train_data,
        steps=args.steps,
        batch_size=args.batch_size,
        context_length=args.context_length,
        seed=args.seed,
        rank=rank,
        world_size=world_size,
        progress=main_process,
        on_step=validate,
    )
    seconds = time.perf_counter() - started
    results: dict[str, object] = {"losses": losses, "validation": validation}
    if main_process:
        last = losses[-20:]
        print(
            f"trained {args.steps} steps in {seconds:.0f} s; training loss {losses[0]:.2f} -> "
            f"{sum(last) / len(last):.2f} (mean of the last {len(last)} steps; ln(vocab) = "
            f"{math.log(tokenizer.vocab_size):.2f}), validation loss {validation[-1][1]:.2f}"
        )
        args.output.mkdir(parents=True, exist_ok=True)
        plot = args.output / "loss.png"
        plot_losses(losses, validation, plot, title=f"attention: {args.attention}")
        print(f"loss curve: {plot}")
        prompt = torch.tensor(tokenizer.encode(args.prompt), device=device)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        sample = generate(
            model,
            prompt,
            args.sample_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            generator=generator,
        )
        text_out = tokenizer.decode(sample.tolist())
        print(f"--- sample (temperature {args.temperature}, top-k {args.top_k}) ---\n{text_out}")
        results.update(sample=text_out, plot=plot, seconds=seconds)
        if args.save is not None:
            command = ["python", "examples/train_gpt.py", *(sys.argv[1:] if argv is None else argv)]
            save_checkpoint(
                args.save,
                model,
                tokenizer,
                seed=args.seed,
                initial_fingerprint=initial_fingerprint,
                summary={
                    "command": shlex.join(command),
                    "steps": args.steps,
                    "seconds": seconds,
                    "train_loss": sum(last) / len(last),
                    "validation_loss": validation[-1][1],
                    "torch_version": str(torch.__version__),
                },
            )
            print(f"checkpoint: {args.save} ({args.save.stat().st_size:,} bytes)")
    if world_size > 1:
        dist.destroy_process_group()
    return results


if __name__ == "__main__":
    main()
