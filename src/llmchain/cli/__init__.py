"""The ``llmchain`` command: run a prompt through a chain, inspect stages, check configs.

Subcommands living in other modules register themselves through ``register(subparsers)``
(listed in ``COMMAND_MODULES``), so this file stays small and imports stay lazy.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = ("llmchain.cli._serve", "llmchain.cli._batch", "llmchain.cli._demo",
                                   "llmchain.report._cli")

EXIT_CALL_ERROR = 1
EXIT_CONFIG_ERROR = 2


def _cmd_run(args: argparse.Namespace) -> int:
    from .. import CallError, Chain
    from .._defaults import find_config

    params = {
        k: v
        for k, v in {"model": args.model, "system": args.system, "timeout_s": args.timeout}.items()
        if v is not None
    }
    with Chain.from_config(find_config(args.config)) as chain:
        try:
            response = chain.complete(args.prompt, **params)
        except CallError as exc:
            print(exc.explain(), file=sys.stderr)
            return EXIT_CALL_ERROR
    if args.json:
        print(response.model_dump_json(indent=2))
    else:
        print(response.text)
    return 0


def _cmd_stages(args: argparse.Namespace) -> int:
    from .._config import options_table
    from ..plugins import get_registry

    registry = get_registry()
    rows = options_table
    if args.json:
        data = {
            name: {
                "plugin": r.plugin,
                "options": [dict(zip(("name", "type", "default"), row, strict=True)) for row in rows(r)],
            }
            for name, r in sorted(registry.stages.items())
        }
        print(json.dumps(data, indent=2))
        return 0
    for title, table in (("stages", registry.stages), ("transports", registry.transports)):
        print(f"{title}:")
        for name, registered in sorted(table.items()):
            doc = (registered.factory.__doc__ or "").strip().splitlines()
            print(f"  {name}  (from {registered.plugin}){'  — ' + doc[0] if doc else ''}")
            for option, type_name, default in options_table(registered):
                print(f"      {option}: {type_name} = {default}")
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .. import Chain

    chain = Chain.from_config(args.file)
    print(chain.describe())
    print("config OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmchain", description="Reliable, cheap, debuggable LLM calls.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="send one prompt through the chain and print the answer")
    run.add_argument("prompt")
    run.add_argument(
        "--config",
        help="TOML config (default: $LLMCHAIN_CONFIG, ./llmchain.toml, else the built-in offline chain)",
    )
    run.add_argument("--json", action="store_true", help="print the full response as JSON")
    run.add_argument("--model")
    run.add_argument("--system", help="system prompt")
    run.add_argument("--timeout", type=float, help="total deadline in seconds")
    run.set_defaults(func=_cmd_run)

    stages = sub.add_parser("stages", help="list registered stages and transports with their options")
    stages.add_argument("--json", action="store_true")
    stages.set_defaults(func=_cmd_stages)

    check = sub.add_parser("check-config", help="validate a config file and show the resulting chain")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check_config)

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmchain`` console script."""
    from .._exceptions import ConfigError, PluginError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, PluginError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
