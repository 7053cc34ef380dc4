"""A few steps of data-parallel training, run by tests/test_distributed.py under torchrun.

``torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py OUTPUT_DIR`` trains
with the training example's own functions, on the CPU with the gloo backend, and
saves each rank's final parameters and losses to ``OUTPUT_DIR/rank{RANK}.pt``.
The test repeats the run in one process on the same global batches.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

EXAMPLE = Path(__file__).parent.parent / "examples" / "train_gpt.py"

# No dropout, so that every process computes what a single one would.
CONFIG = {
    "context_length": 16,
    "emb_dim": 16,
    "n_heads": 2,
    "n_layers": 2,
    "drop_rate": 0.0,
    "attention": "multihead",
}
SETTINGS = {"steps": 4, "batch_size": 8, "context_length": 16, "seed": 5}
LEARNING_RATE = 1e-2


def load_example() -> ModuleType:
    """examples/train_gpt.py as a module (examples/ is not a package)."""
    if "train_gpt" not in sys.modules:
        spec = importlib.util.spec_from_file_location("train_gpt", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["train_gpt"] = module
        spec.loader.exec_module(module)
    return sys.modules["train_gpt"]


def text_data() -> tuple[torch.Tensor, int]:
    """The shipped story as character ids, and the vocabulary size."""
    example = load_example()
    text = example.load_text()
    tokenizer = example.CharTokenizer(text)
    return torch.tensor(tokenizer.encode(text)), tokenizer.vocab_size


def build_model(seed: int, vocab_size: int) -> nn.Module:
    """The test's GPT in float64, so that the comparison is not blurred by rounding."""
    from attnkit.models import GPTModel

    torch.manual_seed(seed)
    return GPTModel({**CONFIG, "vocab_size": vocab_size}).double()


def train(model: nn.Module, data: torch.Tensor, rank: int = 0, world_size: int = 1) -> list[float]:
    """Train ``model`` (DDP-wrapped when ``world_size > 1``) with the example's loop."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    return load_example().train(
        model, optimizer, data, **SETTINGS, rank=rank, world_size=world_size
    )


def main(output: Path) -> None:
    rank, world_size, _ = load_example().init_distributed("cpu")
    data, vocab_size = text_data()
    # Each rank starts from its own weights: DDP must replace them with rank 0's.
    model = build_model(SETTINGS["seed"] + rank, vocab_size)
    losses = train(DistributedDataParallel(model), data, rank, world_size)
    state = {"parameters": model.state_dict(), "losses": losses, "backend": dist.get_backend()}
    torch.save(state, output / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent.parent))  # for attnkit in a source checkout
    main(Path(sys.argv[1]))
