"""attnkit: a plugin-based registry of attention mechanisms for PyTorch.

```python
import attnkit

attnkit.list_variants()                      # ['causal', 'multihead', ...]
attention = attnkit.create("multihead", d_in=768, d_out=768, context_length=1024, num_heads=12)
```

Plugins load lazily, the first time the registry is used, not at import.
"""

from attnkit import masks
from attnkit.cache import KVCache
from attnkit.errors import (
    AttnkitError,
    DuplicateKernelError,
    DuplicateVariantError,
    InvalidVariantError,
    PluginError,
    PluginLoadError,
    PluginLoadWarning,
    UnknownKernelError,
    UnknownVariantError,
)
from attnkit.hookspecs import hookimpl
from attnkit.interface import Attention
from attnkit.kernel import Kernel
from attnkit.registry import (
    PluginInfo,
    create,
    create_from_config,
    get_kernel,
    get_variant,
    list_kernels,
    list_plugins,
    list_variants,
    register,
    unregister,
)

__version__ = "0.1.0"

__all__ = [
    "Attention",
    "AttnkitError",
    "DuplicateKernelError",
    "DuplicateVariantError",
    "InvalidVariantError",
    "KVCache",
    "Kernel",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PluginLoadWarning",
    "UnknownKernelError",
    "UnknownVariantError",
    "__version__",
    "create",
    "create_from_config",
    "get_kernel",
    "get_variant",
    "hookimpl",
    "list_kernels",
    "list_plugins",
    "list_variants",
    "masks",
    "register",
    "unregister",
]
