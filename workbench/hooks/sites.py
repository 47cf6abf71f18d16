"""Named hook sites: stable, TransformerLens-style names mapped onto a transformers model's modules.

=========================  =====================================  =================================
name                        where (Llama-like layout)              tensor
=========================  =====================================  =================================
blocks.{l}.hook_resid_pre   input of decoder layer l               [batch, pos, d_model]
blocks.{l}.hook_attn_out    output of layer l's attention module   [batch, pos, d_model]
blocks.{l}.hook_mlp_out     output of layer l's MLP                [batch, pos, d_model]
blocks.{l}.hook_resid_post  output of decoder layer l              [batch, pos, d_model]
blocks.{l}.attn.hook_pattern attention probabilities of layer l    [batch, head, query_pos, key_pos]
=========================  =====================================  =================================

``resid_post`` of layer l equals ``resid_pre`` of layer l+1 and ``hidden_states[l + 1]`` of transformers'
``output_hidden_states`` (except the last layer: transformers reports that one after the final norm). Short forms are accepted everywhere: ``"resid_post.10"``, ``"resid_post:10"``,
``("resid_post", 10)``; negative layers count from the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from workbench.models import LoadedModel

KINDS = ("resid_pre", "attn_out", "attn_pattern", "mlp_out", "resid_post")
"""Site kinds in the order they happen inside one decoder layer."""
WRITABLE_KINDS = ("resid_pre", "attn_out", "mlp_out", "resid_post")
_NAME_RE = re.compile(r"^blocks\.(-?\d+)\.(?:hook_(resid_pre|attn_out|mlp_out|resid_post)|attn\.hook_(pattern))$")
_SHORT_RE = re.compile(r"^(resid_pre|attn_out|mlp_out|resid_post|attn_pattern|pattern)[.:](-?\d+)$")


@dataclass(frozen=True, order=True)
class Site:
    layer: int
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown site kind {self.kind!r}; known kinds: {', '.join(KINDS)}")

    @property
    def name(self) -> str:
        if self.kind == "attn_pattern":
            return f"blocks.{self.layer}.attn.hook_pattern"
        return f"blocks.{self.layer}.hook_{self.kind}"

    @property
    def order(self) -> tuple[int, int]:
        """Execution order within a forward pass (layer, then position inside the layer)."""
        return (self.layer, KINDS.index(self.kind))

    @property
    def writable(self) -> bool:
        return self.kind in WRITABLE_KINDS

    def __str__(self) -> str:
        return self.name


SiteLike = Union[Site, str, tuple[str, int]]


def parse_site(site: SiteLike, lm: "LoadedModel | None" = None) -> Site:
    """Parse any accepted spelling into a ``Site``; with ``lm``, check and normalise the layer index."""
    if isinstance(site, Site):
        parsed = site
    elif isinstance(site, tuple) and len(site) == 2:
        kind = "attn_pattern" if site[0] == "pattern" else site[0]
        parsed = Site(layer=int(site[1]), kind=str(kind))
    elif isinstance(site, str):
        if match := _NAME_RE.match(site):
            parsed = Site(layer=int(match.group(1)), kind=match.group(2) or "attn_pattern")
        elif match := _SHORT_RE.match(site):
            kind = "attn_pattern" if match.group(1) == "pattern" else match.group(1)
            parsed = Site(layer=int(match.group(2)), kind=kind)
        else:
            raise ValueError(
                f"unknown hook site {site!r}; use 'blocks.<layer>.hook_<kind>' or '<kind>.<layer>' with kind in "
                f"{', '.join(KINDS)} (e.g. 'blocks.10.hook_resid_post' or 'resid_post.10')")
    else:
        raise TypeError(f"a hook site is a Site, a string or a (kind, layer) tuple, not {type(site).__name__}")
    if lm is not None:
        parsed = Site(layer=lm.check_layer(parsed.layer), kind=parsed.kind)
    return parsed


def site_names(lm: "LoadedModel", kinds: tuple[str, ...] = KINDS) -> list[str]:
    """Every hook-site name of ``lm`` in execution order."""
    return [Site(layer, kind).name for layer in range(lm.n_layers) for kind in kinds]
