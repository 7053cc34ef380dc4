"""GPTModel under DistributedDataParallel: two CPU processes (gloo) launched by torchrun.

The ranks must end with identical parameters, equal (to float64 rounding) to
single-process training on the same global batches: DDP averages the ranks'
gradients, and the mean of equal shares' mean losses is the global batch's mean loss.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.ddp_worker import SETTINGS, build_model, text_data, train
from tests.helpers import TOLERANCES

WORKER = Path(__file__).parent / "ddp_worker.py"
RANKS = 2

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no torch.distributed with the gloo backend",
)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Each rank's saved results, after one torchrun launch of the worker."""
    output = tmp_path_factory.mktemp("ddp")
    # --standalone runs the rendezvous on a free port, so parallel runs cannot clash.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    command += ["--nproc-per-node", str(RANKS), str(WORKER), str(output)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).parent.parent
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(root), environment.get("PYTHONPATH")])
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env=environment, cwd=root
    )
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    return [torch.load(output / f"rank{rank}.pt") for rank in range(RANKS)]


def test_every_rank_ran_on_gloo(ranks):
    assert [state["backend"] for state in ranks] == ["gloo"] * RANKS
    assert all(len(state["losses"]) == SETTINGS["steps"] for state in ranks)


def test_the_parameters_are_identical_across_ranks(ranks):
    first = ranks[0]["parameters"]
    for state in ranks[1:]:
        assert state["parameters"].keys() == first.keys()
        for name, value in state["parameters"].items():
            assert torch.equal(value, first[name]), name


def test_ddp_matches_one_process_on_the_same_global_batches(ranks):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data, vocab_size = text_data()
        model = build_model(SETTINGS["seed"], vocab_size)  # rank 0's weights
        initial = {name: value.clone() for name, value in model.named_parameters()}
        losses = train(model, data)
    finally:
        torch.set_num_threads(threads)
    distributed = ranks[0]["parameters"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(distributed[name], value, **TOLERANCES[torch.float64])
    assert all(not torch.equal(p, initial[name]) for name, p in model.named_parameters())
    torch.testing.assert_close(ranks[0]["losses"], losses, **TOLERANCES[torch.float64])
    assert losses[-1] < losses[0]
