"""WAS controllers inside steering bundles: ``Bundle.from_controller``-style packing and the ``controller`` applier.

A controller bundle holds one ``controller`` operation:

* ``sites``: ``blocks.{l}.hook_resid_post`` of every weighted layer (where the patch is added, last position);
* ``tensor``: ``op0.directions`` — one unit direction per weighted layer, shape ``[n_sites, d_model]``;
* ``scale``: the patch strength (norm of the patch at a layer when ``s · w_l = 1``);
* ``params``: ``read_layers``, the MLP's ``hidden`` width and the names of its tensors (``op0.net.*``).

Applied with ``steering.load_into(model, bundle)`` it steers a plain ``model.generate(...)`` on its own: the hooks read
the unsteered prompt first (see ``steering.controller.ControllerRead``), so no workbench generation loop is needed.

>>> bundle = controller_bundle(ctrl, lm, eval={"harmful_refusal": 0.9})   # doctest: +SKIP
>>> with steering.load_into(hf_model, bundle):                             # doctest: +SKIP
...     hf_model.generate(**batch)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from steering.bundle import Bundle, BundleOp, _with_defaults, register_operation
from steering.controller import FORMAT, Controller, ControllerConfig, WASNet, unit_rows
from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel

PREFIX = "op0."


def controller_bundle(ctrl: Controller, lm: "LoadedModel", *, name: str = "was-controller",
                      provenance: dict[str, Any] | None = None, eval: dict[str, Any] | None = None) -> Bundle:
    """Pack a trained controller (checked against ``lm``) as a one-operation ``controller`` bundle."""
    ctrl.check_model(lm)
    net_names = {k: f"{PREFIX}net.{k}" for k in ctrl.net.state_dict()}
    tensors: dict[str, Tensor] = {f"{PREFIX}directions": ctrl.directions_LD}
    tensors.update({net_names[k]: v for k, v in ctrl.net.state_dict().items()})
    op = BundleOp("controller", [hooks.Site(layer, "resid_post").name for layer in ctrl.steer_layers],
                  f"{PREFIX}directions", scale=ctrl.config.strength, scope="all",
                  params={"format": FORMAT, "read_layers": list(ctrl.read_layers), "hidden": ctrl.config.hidden,
                          "net_tensors": net_names, "training": ctrl.metadata.get("training", {}),
                          "direction_source": ctrl.metadata.get("direction", "unknown")})
    prov = {"method": "WAS controller (Guiding Giants)", **(provenance or {})}
    return Bundle([op], tensors, Bundle.model_info(lm), name=name, provenance=_with_defaults(prov),
                  eval=dict(eval or {}))


def controller_from_op(op: BundleOp, tensors: dict[str, Tensor], model: dict[str, Any]) -> Controller:
    """Rebuild the controller of a bundle operation (validated: tensor names, shapes, layers)."""
    params = op.params
    missing = [k for k in ("read_layers", "hidden", "net_tensors") if k not in params]
    if missing:
        raise ValueError(f"controller operation lacks params {missing}; export it again with "
                         "steering.controller_bundle.controller_bundle")
    read = [int(layer) for layer in params["read_layers"]]
    steer = [hooks.parse_site(site).layer for site in op.sites]
    if any(hooks.parse_site(site).kind != "resid_post" for site in op.sites):
        raise ValueError(f"controller sites must be resid_post sites, got {op.sites}")
    d_model = int(model["d_model"])
    state = {}
    for key, tensor_name in dict(params["net_tensors"]).items():
        if tensor_name not in tensors:
            raise ValueError(f"controller operation names tensor {tensor_name!r}, which the bundle lacks")
        state[key] = tensors[tensor_name]
    net = WASNet(len(read) * d_model, len(steer), int(params["hidden"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"controller weights do not match read_layers={read}, hidden={params['hidden']}, "
                         f"d_model={d_model}: {err}") from None
    config = ControllerConfig(read_k=len(read), hidden=int(params["hidden"]), strength=op.scale,
                              steer_layers=tuple(steer))
    return Controller(net, config, read, steer, unit_rows(tensors[op.tensor], len(steer), d_model),
                      str(model.get("fingerprint") or ""), d_model, {"training": params.get("training", {}),
                                                                   "direction": params.get("direction_source")})


def _apply_controller(lm: "LoadedModel", op: BundleOp, tensors: dict[str, Tensor]) -> list[hooks.Op]:
    ctrl = controller_from_op(op, tensors, {"d_model": lm.d_model, "fingerprint": None})
    ctrl.check_model(lm, fingerprint=False)  # Bundle.apply has checked the fingerprint (when strict)
    ops, _ = ctrl.live_ops(lm)
    return ops


register_operation("controller", _apply_controller)
