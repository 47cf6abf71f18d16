"""Model fingerprints: a short hash that says "these artifacts were made on exactly this model".

The hash covers the architecture config (minus dtype/device-like fields) and every parameter rounded to bfloat16, so
the same checkpoint loaded in float32 or bfloat16, on CPU or CUDA, gets the same fingerprint, while any fine-tune or
different model does not.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn
from transformers import PretrainedConfig

_IGNORED_CONFIG_KEYS = {
    "torch_dtype", "dtype", "transformers_version", "_name_or_path", "_attn_implementation",
    "_attn_implementation_internal", "attn_implementation", "quantization_config", "use_cache", "architectures",
    "_commit_hash", "output_hidden_states", "output_attentions", "return_dict",
}


def config_digest_source(config: PretrainedConfig) -> str:
    data = {k: v for k, v in config.to_dict().items() if k not in _IGNORED_CONFIG_KEYS}
    return json.dumps(data, sort_keys=True, default=str)


@torch.no_grad()
def fingerprint(model: nn.Module, config: PretrainedConfig) -> str:
    """sha256 (first 16 hex digits) of the config and the bfloat16-rounded weights, in parameter-name order."""
    digest = hashlib.sha256(config_digest_source(config).encode())
    seen: set[int] = set()
    for name, tensor in sorted(model.state_dict(keep_vars=False).items()):
        if tensor.data_ptr() in seen and tensor.numel() > 0:  # tied weights hash once
            continue
        seen.add(tensor.data_ptr())
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        as_bf16 = tensor.detach().to("cpu", torch.bfloat16).contiguous()
        digest.update(as_bf16.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]
