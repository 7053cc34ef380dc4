"""Bridges to other libraries, each an optional extra imported only when used.

- `attnkit.integrations.transformers`: attnkit kernels as Hugging Face
  transformers attention implementations (``pip install attnkit[transformers]``).
"""
