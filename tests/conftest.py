"""Shared fixtures: one tiny random model per session, and the real SmolLM2 for integration tests."""

from __future__ import annotations

import pytest
import torch

from workbench.models import tiny_model


@pytest.fixture(scope="session")
def tiny():
    """2-layer Llama, hidden 64, byte tokenizer with a ChatML template. Do not mutate it in tests."""
    return tiny_model()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls gain nothing from threads, and on a loaded shared CPU extra threads only spin. Request it from an
    autouse fixture of a module to run that module single-threaded."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def smollm2():
    from workbench.models import load_model

    return load_model("smollm2-135m-instruct", device="cpu")


def _ours(hook_dict) -> list:
    """Hooks not installed by transformers itself (it keeps permanent output-capturing hooks)."""
    return [h for h in hook_dict.values() if not getattr(h, "__module__", "").startswith("transformers")]


def assert_no_hooks(model) -> None:
    for name, module in model.named_modules():
        assert not _ours(module._forward_hooks), f"forward hook left on {name}"
        assert not _ours(module._forward_pre_hooks), f"forward pre-hook left on {name}"
