"""Models built from the registry: a small GPT whose attention is chosen by name, and generation.

```python
from attnkit.models import GPTModel, generate

config = {"vocab_size": 64, "context_length": 128, "emb_dim": 64, "n_heads": 4, "n_layers": 2,
          "attention": "multihead", "drop_rate": 0.1, "qkv_bias": False}
model = GPTModel(config)                                 # or "attention": "causal", ...
tokens = generate(model, prompt_ids, max_new_tokens=100)  # cached when the attention can be
```
"""

from attnkit.models.generation import generate, next_token
from attnkit.models.gpt import ATTENTION_ARGUMENTS, GPTModel, TransformerBlock, causal_variants

__all__ = [
    "ATTENTION_ARGUMENTS",
    "GPTModel",
    "TransformerBlock",
    "causal_variants",
    "generate",
    "next_token",
]
