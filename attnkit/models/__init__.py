"""Models built from the registry: a small GPT whose attention is chosen by name, and generation.

```python
from attnkit.models import GPTModel, generate, kv_cache_bytes

config = {"vocab_size": 64, "context_length": 128, "emb_dim": 64, "n_heads": 4, "n_layers": 2,
          "attention": "multihead", "drop_rate": 0.1, "qkv_bias": False}
model = GPTModel(config)                                 # or "attention": "gqa", "num_kv_heads": 2
tokens = generate(model, prompt_ids, max_new_tokens=100)  # cached when the attention can be
loss = model.loss(inputs, targets)                       # the head and the loss fused, no logits
kv_cache_bytes(config, 128)                               # the cache's size, from the config alone
```
"""

from attnkit.models.generation import generate, next_token
from attnkit.models.gpt import ATTENTION_ARGUMENTS, GPTModel, TransformerBlock, causal_variants
from attnkit.models.loss import linear_cross_entropy
from attnkit.models.memory import kv_cache_bytes

__all__ = [
    "ATTENTION_ARGUMENTS",
    "GPTModel",
    "TransformerBlock",
    "causal_variants",
    "generate",
    "kv_cache_bytes",
    "linear_cross_entropy",
    "next_token",
]
