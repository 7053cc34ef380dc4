"""The built-in attention variants, one module per stage of the teaching path, and kernels.

Each module is an ordinary attnkit plugin, found through the ``attnkit``
entry-point group exactly as a third-party plugin is:

1. `attnkit_builtins.simple`: simplified self-attention, no trainable weights.
2. `attnkit_builtins.self_attention`: trainable query, key and value projections.
3. `attnkit_builtins.causal`: a causal mask and dropout on the attention weights.
4. `attnkit_builtins.multihead`: several heads, as one weight-split module and as a
   stack of causal heads.

and one module of kernels, the computation the trainable variants hand their
queries, keys, values and mask to: `attnkit_builtins.kernels` (``sdpa``,
``explicit``, ``flex``).

The source lives in the repository's ``plugins/`` folder and ships as the
``attnkit_builtins`` package.
"""
