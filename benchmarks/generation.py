"""Tokens per second of greedy generation with and without the KV cache, in one run.

    python benchmarks/generation.py                      # multihead, 512 new tokens
    python benchmarks/generation.py --attention causal --repeats 3 --threads 1

One model, one prompt, greedy decoding. The cached and uncached runs alternate,
repeat after repeat, so that a change in the machine's load hits both; each
mode's best repeat counts. Both must produce the same tokens. By default the
prompt plus the new tokens fit in the context, so every cached step runs one
token (see `attnkit.models.generate` for what happens past the context).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from attnkit.models import GPTModel, generate


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="multihead", help="a causal variant that caches")
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each mode")
    parser.add_argument("--vocab-size", type=int, default=256, help="256: byte-level text")
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--emb-dim", type=int, default=256)
    parser.add_argument("--n-heads", type=int, default=8)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's choice); 1 is steadier on a busy machine",
    )
    return parser.parse_args(argv)


def timed(model: GPTModel, prompt: torch.Tensor, new_tokens: int, use_cache: bool):
    """``(tokens, seconds)`` of one generation."""
    started = time.perf_counter()
    tokens = generate(model, prompt, new_tokens, use_cache=use_cache)
    return tokens, time.perf_counter() - started


def main(argv: list[str] | None = None) -> float:
    """Run the benchmark, print its report and return the speed-up."""
    args = parse_arguments(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = {
        "vocab_size": args.vocab_size,
        "context_length": args.context_length,
        "emb_dim": args.emb_dim,
        "n_heads": args.n_heads,
        "n_layers": args.n_layers,
        "drop_rate": 0.0,
        "attention": args.attention,
    }
    torch.manual_seed(args.seed)
    model = GPTModel(config).eval()
    if not model.supports_kv_cache:
        raise SystemExit(f"the {args.attention!r} attention has no KV cache to compare with")
    prompt = torch.randint(0, args.vocab_size, (1, args.prompt_tokens))
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {config} ({parameters / 1e6:.1f} M parameters)")
    print(
        f"generating {args.new_tokens} tokens after a {args.prompt_tokens}-token prompt, "
        f"greedy, batch 1; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    for use_cache in (True, False):  # warm-up: first calls allocate and pick kernels
        generate(model, prompt, 8, use_cache=use_cache)

    seconds: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, torch.Tensor] = {}
    for repeat in range(args.repeats):
        for use_cache in (True, False):
            outputs[use_cache], elapsed = timed(model, prompt, args.new_tokens, use_cache)
            seconds[use_cache].append(elapsed)
            mode = "cached" if use_cache else "uncached"
            print(f"  repeat {repeat + 1}, {mode:>8}: {args.new_tokens / elapsed:8.1f} tokens/s")
    if not torch.equal(outputs[True], outputs[False]):
        raise SystemExit("cached and uncached generation produced different tokens")

    rate = {mode: args.new_tokens / min(times) for mode, times in seconds.items()}
    speed_up = rate[True] / rate[False]
    print(f"with the cache:    {rate[True]:8.1f} tokens/s (best of {args.repeats})")
    print(f"without the cache: {rate[False]:8.1f} tokens/s (best of {args.repeats})")
    print(f"speed-up: {speed_up:.1f}x (the same {args.new_tokens} tokens either way)")
    return speed_up


if __name__ == "__main__":
    main()
