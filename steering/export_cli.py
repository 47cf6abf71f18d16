"""``workbench export ...``: package steering for deployment.

    workbench export bundle runs/vectors/happy.json --out runs/bundles/happy --model smollm2-135m-instruct
    workbench export bundle runs/refusal/controller.json --out runs/bundles/was --model qwen2.5-coder-0.5b-instruct
    workbench export gguf runs/bundles/happy --out happy.gguf        # llama.cpp: --control-vector happy.gguf
    workbench export import-gguf happy.gguf --out runs/bundles/from-gguf --model smollm2-135m-instruct
    workbench export show runs/bundles/happy
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="steering bundles (safetensors + manifest) and llama.cpp GGUF",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="export_command", metavar="ACTION", required=True)

    p = sub.add_parser("bundle", help="a SteeringVector or WAS controller (.json/.safetensors pair) or bundle -> "
                                      "bundle folder (+GGUF for pure additions)")
    p.add_argument("source", help="steering-vector or controller .json, bundle folder, bundle .safetensors or "
                                  "control-vector .gguf")
    p.add_argument("--out", required=True, help="output bundle folder")
    p.add_argument("--model", default=None, help="model to check against and record (name or folder)")
    p.add_argument("--name", default=None, help="bundle name (default: the source's)")
    p.add_argument("--scale", type=float, default=None, help="multiply the addition scales by this")
    p.add_argument("--gguf", choices=("auto", "yes", "no"), default="auto",
                   help="also write control_vector.gguf (auto: when the bundle is pure additions)")
    p.add_argument("--allow-scope-change", action="store_true",
                   help="export non-'all' token scopes to GGUF anyway (llama.cpp adds at every position)")
    p.add_argument("--eval-json", default=None, help="JSON file of evaluation figures to record in the manifest")
    p.set_defaults(func=_cmd_bundle)

    p = sub.add_parser("gguf", help="bundle -> llama.cpp control-vector GGUF")
    p.add_argument("source", help="bundle folder or bundle .safetensors")
    p.add_argument("--out", required=True, help="output .gguf path")
    p.add_argument("--allow-scope-change", action="store_true", help="see `export bundle --help`")
    p.set_defaults(func=_cmd_gguf)

    p = sub.add_parser("import-gguf", help="llama.cpp control-vector GGUF -> bundle folder")
    p.add_argument("source", help="control-vector .gguf")
    p.add_argument("--out", required=True, help="output bundle folder")
    p.add_argument("--model", default=None, help="model the vector is for (recorded; widths checked)")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("show", help="print a bundle's manifest")
    p.add_argument("source", help="bundle folder, .safetensors, .gguf or steering-vector .json")
    p.set_defaults(func=_cmd_show)


def _load_model(name: str | None):
    if name is None:
        return None
    from workbench.models import load_model

    return load_model(name)


def _cmd_bundle(args: argparse.Namespace) -> int:
    from steering.bundle import Bundle
    from steering.export import export, load_bundle

    lm = _load_model(args.model)
    if _is_controller(args.source):
        if lm is None:
            raise SystemExit("a controller bundle records the model's depth: pass --model (the model it was "
                             "trained on)")
        from steering.controller import Controller
        from steering.controller_bundle import controller_bundle

        bundle = controller_bundle(Controller.load(args.source, lm), lm, name=Path(args.source).stem)
    else:
        bundle = load_bundle(args.source)
    if lm is not None:
        bundle.check_model(lm)  # the source's own fingerprint, when it has one, must match
        bundle.model = Bundle.model_info(lm)
    if args.scale is not None:
        bundle = bundle.scaled(args.scale)
    if args.name:
        bundle.name = args.name
    if args.eval_json:
        bundle.eval = {**bundle.eval, **json.loads(Path(args.eval_json).read_text())}
    gguf = {"auto": None, "yes": True, "no": False}[args.gguf]
    written = export(bundle, args.out, gguf=gguf, allow_scope_change=args.allow_scope_change)
    for kind, path in written.items():
        log.info("wrote %s: %s", kind, path)
    return 0


def _is_controller(source: str) -> bool:
    from steering.controller import FORMAT

    path = Path(source)
    if path.suffix != ".json" or path.name == "manifest.json" or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False


def _cmd_gguf(args: argparse.Namespace) -> int:
    from steering.export import export_gguf, load_bundle

    path = export_gguf(load_bundle(args.source), args.out, allow_scope_change=args.allow_scope_change)
    log.info("wrote %s (llama.cpp: --control-vector %s)", path, path)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from steering.export import import_gguf

    lm = _load_model(args.model)
    bundle = import_gguf(args.source, lm)
    if lm is not None:
        bundle.check_model(lm, strict=False)
    bundle.save(args.out)
    log.info("wrote bundle %s with %d additions", args.out, len(bundle.ops))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from steering.export import load_bundle

    print(json.dumps(load_bundle(args.source).manifest(), indent=2, sort_keys=True))
    return 0
