"""A plugin whose variants load fine but break the Attention contract, for attnkit check."""

import torch

import attnkit


class LookAhead(attnkit.Attention):
    """Declares itself causal, but each token also sees the token after it."""

    name = "lookahead"
    causal = True

    def forward(self, x, need_weights=False):
        tokens = x.shape[1]
        hidden = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).triu(2)
        scores = (x @ x.transpose(1, 2)).masked_fill(hidden, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = weights @ x
        return (context, weights.unsqueeze(1)) if need_weights else context


class Unnormalised(attnkit.Attention):
    """Its attention weights are exponentiated scores that nobody normalised."""

    name = "unnormalised"

    def forward(self, x, need_weights=False):
        weights = torch.exp(x @ x.transpose(1, 2) / x.shape[-1])
        context = weights @ x
        return (context, weights.unsqueeze(1)) if need_weights else context


@attnkit.hookimpl
def register_variants(register):
    register(LookAhead)
    register(Unnormalised)
