"""Configuration of a Rep2Text inverter (adapter shape, decoder mode, training schedule)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_PROMPT = "Reconstruct the input: {soft}\nInput:"


@dataclass
class Rep2TextConfig:
    """Everything that defines a trained inverter apart from the two models. Saved as ``cfg.json``."""

    layer: int
    """Target-model layer whose ``resid_post`` last-token state is inverted."""
    n_soft_tokens: int = 8
    """k: number of soft tokens the adapter writes into the decoder's embedding space."""
    d_hidden: int = 1024
    """Hidden width of the adapter MLP."""
    span_tokens: int = 16
    """Training span length in target tokens (the paper uses 16)."""
    decoder_mode: str = "frozen"
    """'frozen' (train only the adapter) or 'lora' (also a peft LoRA on the decoder's attention projections)."""
    lora_rank: int = 8
    lora_alpha: int = 16
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 50
    prompt: str = DEFAULT_PROMPT
    """Decoder prompt; ``{soft}`` marks where the soft tokens go."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_soft_tokens < 1:
            raise ValueError(f"n_soft_tokens must be >= 1, got {self.n_soft_tokens}")
        if self.d_hidden < 1:
            raise ValueError(f"d_hidden must be >= 1, got {self.d_hidden}")
        if self.span_tokens < 1:
            raise ValueError(f"span_tokens must be >= 1, got {self.span_tokens}")
        if self.decoder_mode not in ("frozen", "lora"):
            raise ValueError(f"decoder_mode must be 'frozen' or 'lora', got {self.decoder_mode!r}")
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps must be >= 0, batch_size >= 1 and lr > 0")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.prompt.count("{soft}") != 1:
            raise ValueError("prompt must contain '{soft}' exactly once (where the soft tokens go)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Rep2TextConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Rep2Text config fields {sorted(unknown)}; "
                             "this file was written by another version")
        return cls(**data)
