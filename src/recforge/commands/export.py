"""``recforge export``: a bundle's model as a self-contained TorchScript or ONNX artefact."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a saved bundle to TorchScript or ONNX (with its schema and preprocessor)",
    )
    p.add_argument("bundle", help="bundle folder of a saved model")
    p.add_argument(
        "--format",
        choices=("torchscript", "onnx"),
        default="torchscript",
        help="artefact format (default: torchscript)",
    )
    p.add_argument("-o", "--out", help="output folder (default: BUNDLE-<format>)")
    p.add_argument(
        "--onnx-exporter",
        choices=("dynamo", "legacy"),
        default="dynamo",
        help="torch.export-based exporter (default) or the deprecated TorchScript-based one",
    )
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from recforge.serve.export import export_bundle

    # ExportError is a RuntimeError: the CLI prints it as an error with exit status 2
    out = export_bundle(args.bundle, args.out, args.format, args.onnx_exporter)
    manifest = json.loads((out / "manifest.json").read_text())
    inputs = ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in manifest["inputs"])
    print(f"exported {manifest['model']} ({args.format}) to {out}")
    print(f"inputs: {inputs}")
    print(f"outputs: {', '.join(o['name'] for o in manifest['outputs'])}")
    return 0
