"""Hook sites and interventions. Every intervention is a context manager (or ``attach()``/``remove()`` handle),
scoped to the calling thread, removed on exit or exception, and never modifies weights.

>>> acts = record(lm, ["Hello"], ["resid_post.10"])                    # doctest: +SKIP
>>> with steer(lm, "resid_post.10", vector, scale=4.0, scope="generated"):  # doctest: +SKIP
...     lm.generate("Tell me a story")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from torch import Tensor

from workbench.hooks.ops import Ablate, Add, Apply, ForwardContext, HookContext, Op, Record, Replace
from workbench.hooks.record import as_batch, record
from workbench.hooks.scope import SCOPES, ScopeLike
from workbench.hooks.session import HookSession, StopForward
from workbench.hooks.sites import KINDS, Site, SiteLike, parse_site, site_names

if TYPE_CHECKING:
    from workbench.models import LoadedModel

__all__ = ["Ablate", "Add", "Apply", "ForwardContext", "HookContext", "HookSession", "KINDS", "Op", "Record",
           "Replace", "SCOPES", "Site", "StopForward", "ablate", "apply", "as_batch", "intervene", "parse_site", "record", "recording",
           "replace", "site_names", "steer"]


def intervene(lm: "LoadedModel", ops: Sequence[Op]) -> HookSession:
    """Any list of operations as one session."""
    return HookSession(lm, ops)


def recording(lm: "LoadedModel", sites: Sequence[SiteLike], *, to_cpu: bool = False) -> HookSession:
    """Record every forward pass inside the block (e.g. during ``generate``); read with ``session[site]``."""
    return HookSession(lm, [Record(site=s, to_cpu=to_cpu) for s in sites])


def steer(lm: "LoadedModel", site: SiteLike, vector: Tensor, scale: float = 1.0, scope: ScopeLike = "all") -> HookSession:
    """Add ``scale * vector`` at ``site`` for the positions in ``scope``."""
    return HookSession(lm, [Add(site=site, vector=vector, scale=scale, scope=scope)])


def ablate(lm: "LoadedModel", direction: Tensor, sites: Sequence[SiteLike] | None = None,
           scope: ScopeLike = "all") -> HookSession:
    """Project ``direction`` out. Default sites: every layer's resid_pre, attn_out and mlp_out (Arditi et al.)."""
    if sites is None:
        sites = [Site(layer, kind) for layer in range(lm.n_layers) for kind in ("resid_pre", "attn_out", "mlp_out")]
    return HookSession(lm, [Ablate(site=s, direction=direction, scope=scope) for s in sites])


def replace(lm: "LoadedModel", site: SiteLike, value: Tensor | Callable[[Tensor], Tensor],
            scope: ScopeLike = "all") -> HookSession:
    return HookSession(lm, [Replace(site=site, value=value, scope=scope)])


def apply(lm: "LoadedModel", site: SiteLike, fn: Callable[[Tensor, HookContext], Tensor | None]) -> HookSession:
    """Run a user function at ``site``; it returns a replacement tensor or None."""
    return HookSession(lm, [Apply(site=site, fn=fn)])
