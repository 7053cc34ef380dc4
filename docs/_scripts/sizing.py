"""The size of a `GPTModel`'s weights, for the "Beyond the four stages" pages.

The model is built on PyTorch's ``meta`` device, which allocates nothing, so a
config far too large for the machine can be counted. Drawing the embeddings'
random values on that device would import torch's compiler (seconds of build
time for values that are never used), so that step is skipped; it changes no
shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from unittest import mock

import torch

from attnkit.models import GPTModel

__all__ = ["parameter_count"]


def parameter_count(config: Mapping[str, Any]) -> int:
    """How many numbers the weights of ``GPTModel(config)`` hold."""
    with torch.device("meta"), mock.patch.object(torch.nn.Embedding, "reset_parameters"):
        model = GPTModel(config)
    return sum(parameter.numel() for parameter in model.parameters())
