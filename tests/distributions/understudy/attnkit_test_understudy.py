"""A working plugin whose entry-point name is that of attnkit-test-import-error's plugin."""

import attnkit


class UnderstudyAttention(attnkit.Attention):
    """Every token attends only to itself."""

    name = "understudy"

    def forward(self, x, need_weights=False):
        tokens = x.shape[1]
        weights = torch_eye(x, tokens)
        return (x, weights) if need_weights else x


def torch_eye(x, tokens):
    import torch

    return torch.eye(tokens, dtype=x.dtype).expand(x.shape[0], 1, tokens, tokens)


@attnkit.hookimpl
def register_variants(register):
    register(UnderstudyAttention)
