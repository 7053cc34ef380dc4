"""``attnkit bench``: time every registered variant against PyTorch's own attention.

One run builds, for each shape, every registered variant that accepts it (see
`attnkit.bench.cases`) and the baselines (see `attnkit.bench.baselines`): two
hand-written modules into `torch.nn.functional.scaled_dot_product_attention`,
``sdpa`` (one fused QKV projection) and ``sdpa_separate`` (three projections), the
faster of which is the reference for every ratio; ``mha`` and ``mha_mask``,
`torch.nn.MultiheadAttention`; and ``textbook``, the explicit form. It measures
each forward (eval, no_grad) and forward plus backward (train, dropout 0), in
turns, as the median of repeated runs after warm-up, and reports milliseconds,
the ratio to the reference, GFLOP/s next to the machine's dense matmul rate, the
attention kernel PyTorch chose and the peak memory (see `attnkit.bench.measure`).

```
attnkit bench                 # the chapter's shape: 8 x 1024 tokens, d_model 768, 12 heads
attnkit bench --quick         # a small shape, under a minute on two cores
attnkit bench --long          # 8,192 and 16,384 tokens, batch 1, forward: peak memory
attnkit bench --shape 2x512x768x12 --variants 'multihead*' --json results.json
attnkit bench --variants multihead --padding 0.25   # padded beside unpadded, and the mask's cost
attnkit bench --variants none --baselines none --kernels   # sdpa and flex with three masks
```

``--padding FRACTION`` adds a padded row beside every variant that takes an
``attention_mask`` (see `attnkit.bench.padding`); ``--kernels`` times the registered
kernels directly with each of ``--kernel-masks`` (see `attnkit.bench.kernels`).

The ``--json`` report (schema ``attnkit-bench/2``) holds:

- ``machine``: ``cpu``, ``cores``, ``usable_cores``, ``threads``, ``memory_gb``,
  ``platform``, ``python``, ``torch``, ``attnkit``, ``date`` (UTC), ``label``, and
  ``load_average`` and ``load_average_after`` (one-minute, when the timing began and ended);
- ``command``, ``preset``, ``settings`` (``dtype``, ``repeats``, ``warmup``, ...),
  ``flop_count`` (how operations are counted), ``modes`` and ``baselines``;
- ``matmul``: ``size``, ``dtype``, ``ms``, ``gflops`` of a square matrix product;
- ``results``: one row per shape, mode and case: ``shape`` (``batch``, ``tokens``,
  ``d_model``, ``heads``), ``mode`` (``forward`` or ``train``), ``name``, ``kind``
  (``variant``, ``baseline`` or, with ``--padding``, ``padded``: the variant called
  with a padding mask, with ``padding`` (``fraction``, ``side``, ``tokens``),
  ``vs_unpadded`` and ``mask_share``), ``reference`` (whether the row is the one the
  group's ratios are to), ``status`` (``ok``, ``skipped``,
  ``error``), ``reason``, ``arguments``, ``heads``, ``head_dim``, ``causal``,
  ``note``, ``ms``, ``runs_ms``, ``calls_per_run``, ``ratio``, ``gflop``,
  ``gflops``, ``matmul_fraction``, ``attention``, ``kernels``, ``causal_halved``,
  ``peak_mb``, ``rss_peak_mb`` and, for the largest shapes, ``memory_estimate_mb``;
- ``padding`` (with ``--padding``): ``fraction``, ``side`` and ``masks``, one per shape
  and mode: ``mask``, ``dense_shape``, ``dense_mb``, ``first_ms`` (built and
  materialised), ``cached_us`` (materialised again) and ``runs_ms``;
- ``kernels`` (with ``--kernels``): ``kernels``, ``masks``, ``reference`` and
  ``results``, one row per shape, mask and kernel: ``shape``, ``batch``, ``heads``,
  ``tokens``, ``head_dim``, ``mask``, ``mask_repr``, ``density``, ``kernel``,
  ``status``, ``reason``, ``first_call_s``, ``attention``, ``kernels``, ``ms``,
  ``runs_ms``, ``calls_per_run`` and ``ratio`` (to ``sdpa`` with the same mask);
- ``create_overhead`` and ``plugin_load`` (unless ``--no-overhead``) and
  ``compile`` (with ``--compile``: the conformance kit's compile check per variant);
- ``elapsed_s``: seconds each part of the run took, and ``total`` (the command's own
  start-up, importing torch, is not included).
"""

from attnkit.bench.command import PRESETS, add_arguments, main, run
from attnkit.bench.report import format_report, load, markdown_table
from attnkit.bench.runner import Config, benchmark

__all__ = [
    "PRESETS",
    "Config",
    "add_arguments",
    "benchmark",
    "format_report",
    "load",
    "main",
    "markdown_table",
    "run",
]
