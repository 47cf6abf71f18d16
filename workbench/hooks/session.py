"""``HookSession``: run a set of operations at named sites, scoped to the calling thread and removed on exit.

How scoping works: every session gets an id that is added to a ``ContextVar`` while it is active. Its torch hooks
check that id first and do nothing for any other thread (or any code outside the ``with`` block), so several threads
can share one model, each with its own interventions, and none leaks into another's request. Hooks are registered on
entry and removed in ``finally``; nothing outlives the session and no weight is ever modified.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Iterator, Sequence

from torch import Tensor
from torch.utils.hooks import RemovableHandle

from workbench.hooks import patterns
from workbench.hooks.ops import ForwardContext, HookContext, Op, Record
from workbench.hooks.scope import GENERATED, PROMPT
from workbench.hooks.sites import Site, SiteLike, parse_site

if TYPE_CHECKING:
    from workbench.models import LoadedModel

_ACTIVE: ContextVar[frozenset[int]] = ContextVar("workbench_active_sessions", default=frozenset())
_IDS = itertools.count(1)
_HOOK_LOCK = threading.Lock()


class StopForward(Exception):
    """Raised by a session's deepest hook to end a forward pass early (recording needs nothing later)."""


class HookSession:
    """Operations bound to one model. Use as ``with HookSession(lm, ops):`` or ``h = ...attach(); h.remove()``."""

    def __init__(self, lm: "LoadedModel", ops: Sequence[Op], *, stop_after: SiteLike | None = None) -> None:
        self.lm = lm
        self.ops = list(ops)
        self.by_site: dict[Site, list[Op]] = defaultdict(list)
        for op in self.ops:
            site = parse_site(op.site, lm)
            op.check(site, lm.d_model)
            self.by_site[site].append(op)
        self._before = [op for op in self.ops if type(op).before_forward is not Op.before_forward]
        self.stop_after = parse_site(stop_after, lm) if stop_after is not None else None
        if self.stop_after is not None and self.stop_after not in self.by_site:
            self.by_site[self.stop_after] = []
        self.id = next(_IDS)
        self.phase = PROMPT
        self._handles: list[RemovableHandle] = []
        self._tokens: list[Token] = []
        self._pattern_ctx = None

    # ---- lifecycle -----------------------------------------------------------------------------------------------
    def __enter__(self) -> "HookSession":
        if self._handles:
            raise RuntimeError("this HookSession is already active; make a new one for a nested block")
        pattern_layers = {site.layer for site in self.by_site if site.kind == "attn_pattern"}
        if pattern_layers:
            patterns.ensure_installed(self.lm.model)
            self._pattern_ctx = patterns.want_patterns(pattern_layers)
            self._pattern_ctx.__enter__()
        self._tokens.append(_ACTIVE.set(_ACTIVE.get() | {self.id}))
        try:
            with _HOOK_LOCK:
                self._register()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with _HOOK_LOCK:
                for handle in self._handles:
                    handle.remove()
                self._handles.clear()
        finally:
            while self._tokens:
                token = self._tokens.pop()
                try:
                    _ACTIVE.reset(token)
                except ValueError:  # removed from another thread/context: drop our id there instead
                    _ACTIVE.set(_ACTIVE.get() - {self.id})
            if self._pattern_ctx is not None:
                try:
                    self._pattern_ctx.__exit__(None, None, None)
                except ValueError:
                    pass
                self._pattern_ctx = None

    attach = __enter__

    def remove(self) -> None:
        self.__exit__(None, None, None)

    @property
    def active(self) -> bool:
        return bool(self._handles)

    # ---- results -------------------------------------------------------------------------------------------------
    def __getitem__(self, site: SiteLike) -> Tensor:
        """Recorded activation at ``site`` (passes concatenated along positions)."""
        wanted = parse_site(site, self.lm)
        for op in self.by_site.get(wanted, []):
            if isinstance(op, Record):
                return op.result()
        raise KeyError(f"{wanted.name} was not recorded in this session; recorded: "
                       f"{[s.name for s, ops in self.by_site.items() if any(isinstance(o, Record) for o in ops)]}")

    # ---- hooks ---------------------------------------------------------------------------------------------------
    def _mine(self) -> bool:
        return self.id in _ACTIVE.get()

    def _run(self, site: Site, acts: Tensor) -> Tensor | None:
        ctx = HookContext(site=site, phase=self.phase)
        changed = None
        for op in self.by_site[site]:
            out = op.run(acts if changed is None else changed, ctx)
            if out is not None:
                changed = out
        if site == self.stop_after:
            raise StopForward(site.name)
        return changed

    def _register(self) -> None:
        lm = self.lm
        self._handles.append(lm.model.register_forward_pre_hook(self._phase_hook, with_kwargs=True))
        for site in sorted(self.by_site):
            layer = lm.layers[site.layer]
            if site.kind == "resid_pre":
                handle = layer.register_forward_pre_hook(self._pre_hook(site), with_kwargs=True)
            elif site.kind == "resid_post":
                handle = layer.register_forward_hook(self._post_hook(site, 0))
            elif site.kind == "attn_out":
                handle = lm.attn(site.layer).register_forward_hook(self._post_hook(site, 0))
            elif site.kind == "attn_pattern":
                handle = lm.attn(site.layer).register_forward_hook(self._post_hook(site, 1))
            else:  # mlp_out
                handle = lm.mlp(site.layer).register_forward_hook(self._post_hook(site, 0))
            self._handles.append(handle)

    @contextmanager
    def _unhooked(self) -> Iterator[None]:
        """This session's hooks do nothing inside the block (other sessions of the thread stay active)."""
        token = _ACTIVE.set(_ACTIVE.get() - {self.id})
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def _phase_hook(self, module, args, kwargs):
        if self._mine():
            cache = kwargs.get("past_key_values")
            seen = cache.get_seq_length() if cache is not None and hasattr(cache, "get_seq_length") else 0
            self.phase = GENERATED if seen > 0 else PROMPT
            if self._before:
                inputs = {"input_ids": args[0], **kwargs} if args else dict(kwargs)
                ctx = ForwardContext(inputs=inputs, phase=self.phase, unhooked=self._unhooked)
                for op in self._before:
                    op.before_forward(ctx)
        return None

    def _pre_hook(self, site: Site):
        def hook(module, args, kwargs):
            if not self._mine():
                return None
            from_args = bool(args)
            hidden = args[0] if from_args else kwargs["hidden_states"]
            new = self._run(site, hidden)
            if new is None:
                return None
            if from_args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return hook

    def _post_hook(self, site: Site, index: int):
        def hook(module, args, output):
            if not self._mine():
                return None
            is_tuple = isinstance(output, tuple)
            acts = output[index] if is_tuple else output
            if acts is None:
                raise RuntimeError(f"{site.name}: the module returned no tensor here (attention weights are only "
                                   "available through the workbench attention wrapper; was it replaced?)")
            new = self._run(site, acts)
            if new is None:
                return None
            if is_tuple:
                return (*output[:index], new, *output[index + 1:])
            return new

        return hook
