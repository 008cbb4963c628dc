"""``nuvem-realtime`` command line: one subcommand per module, each with ``add_arguments`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module providing add_arguments(parser) and run(args) -> int
COMMANDS = {
    "serve": ("gateway.serve", "run the gateway (HTTP + WebSocket) and the CDC worker"),
    "migrate": ("gateway.migrate", "create or upgrade the nuvem_realtime schema"),
    "keys": ("gateway.keys_cli", "create, list and revoke API keys"),
    "demo": ("gateway.demo", "the service on the embedded Postgres with a live demo change stream"),
    "tail": ("cdc.tail", "print the change stream as JSON lines, like pg_recvlogical"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nuvem-realtime", description="Self-hosted realtime for Postgres.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            p.set_defaults(_run=lambda args, n=name: _missing(n))
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _missing(name: str) -> int:
    print(f"nuvem-realtime: the '{name}' command is not available in this build", file=sys.stderr)
    return 2


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced, e.g. under pytest)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _log_to_stderr() -> None:
    """Logs go to stderr so that stdout stays data (``tail``, ``demo`` print JSON lines)."""
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
