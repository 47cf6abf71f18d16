"""Configuration of an activation store harvest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

FORMATTINGS = ("packed", "sequence")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class StoreConfig:
    sites: list[str]
    """Hook sites to record (any spelling ``workbench.hooks.parse_site`` accepts)."""
    formatting: str = "packed"
    """``packed``: examples tokenised, concatenated (EOS between) and cut into blocks of ``block_size`` tokens.
    ``sequence``: one example per row, truncated at ``block_size`` (FAST-style chat data)."""
    block_size: int = 128
    max_tokens: int = 1_000_000
    """Token budget; harvesting stops at the first batch boundary at or past it."""
    batch_size: int = 8
    shard_tokens: int = 65_536
    """A shard is flushed at the first batch boundary at or past this many tokens."""
    dtype: str = "float32"
    dataset: str = "custom"
    """Free-text name of the data, recorded in the manifest."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sites:
            raise ValueError("StoreConfig.sites needs at least one hook site")
        if self.formatting not in FORMATTINGS:
            raise ValueError(f"formatting must be one of {FORMATTINGS}, got {self.formatting!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("block_size", "max_tokens", "batch_size", "shard_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"StoreConfig.{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)
