"""The ``milepost`` command line. Bad flags or config: one sentence naming the key and value, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dashboard.command import register as register_dashboard
from milepost import __version__
from milepost.auth import is_loopback
from milepost.config import Config, ConfigError, load_config, mask_url
from simulator.command import register as register_simulator


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"milepost: {message[0].upper()}{message[1:]}. See '{self.prog} --help'.\n")


def _say(line: str) -> None:
    print(f"milepost: {line}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="milepost", description="Business-milestone tracing for retail.")
    parser.add_argument("--version", action="version", version=f"milepost {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the node: ingest, correlation, alerts, query API",
        description="Run a Milepost node.",
    )
    serve.add_argument("--config", type=Path, help="YAML configuration file (every key optional)")
    serve.add_argument(
        "--data-dir", type=Path, default=Path("milepost-data"), help="default: ./milepost-data"
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="HTTP port for OTLP/HTTP, CloudEvents and the API (default 4318)"
    )
    serve.add_argument("--grpc-port", type=int, help="OTLP/gRPC port (default 4317; 0 turns gRPC off)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=serve_command)

    migrate = commands.add_parser(
        "migrate", help="create or upgrade the schema", description="Create or upgrade the ClickHouse schema."
    )
    migrate.add_argument("--config", type=Path, help="YAML configuration file")
    migrate.add_argument(
        "--data-dir", type=Path, default=Path("milepost-data"), help="for the embedded store"
    )
    migrate.set_defaults(handler=migrate_command)
    # Other components add their own commands (each module: register(commands), which sets a handler).
    for register in _registrations():
        register(commands)
    return parser


def _registrations() -> list[Callable[[Any], None]]:
    """The ``register`` functions of the commands that live with their components."""
    return [register_dashboard, register_simulator]


def _with_flags(config: Config, args: argparse.Namespace) -> Config:
    server = config.server
    changes = {
        key: value
        for key, value in (("host", args.host), ("port", args.port), ("grpc_port", args.grpc_port))
        if value is not None
    }
    for key in ("port", "grpc_port"):
        if key in changes and not 0 <= changes[key] <= 65535:
            raise ConfigError(
                f"Flag '--{key.replace('_', '-')}' has value '{changes[key]}'. Must be 0 to 65535."
            )
    return dataclasses.replace(config, server=dataclasses.replace(server, **changes))


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    class _NodeServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM after shutting down, which would end the process before
            # the node reports that everything acknowledged is stored; handle it here instead.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.handle_exit)
            yield

    from milepost.logs import configure_logging
    from milepost.node import DataDirInUse, Node

    config = _with_flags(load_config(args.config), args)
    host, port = config.server.host, config.server.port
    if not config.tokens and not is_loopback(host):
        raise ConfigError(
            f"Config 'server.host' has value '{host}', but no auth token is configured: "
            "add auth.tokens or listen on 127.0.0.1."
        )
    configure_logging(args.log_level)
    node = Node(config, args.data_dir, progress=_say)
    try:
        node.open()
    except DataDirInUse as exc:
        _say(str(exc))
        return 2
    node.start_grpc(host, config.server.grpc_port)
    grpc_line = f", OTLP/gRPC on {host}:{config.server.grpc_port}" if config.server.grpc_port else ""
    endpoints = "OTLP/HTTP /v1/traces, CloudEvents /v1/events, API /api/v1"
    _say(f"listening on http://{host}:{port} ({endpoints}){grpc_line}")
    _say(f"health: http://{host}:{port}/readyz  metrics: http://{host}:{port}/metrics  data: {args.data_dir}")
    server = _NodeServer(
        uvicorn.Config(
            node.app(),
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
            timeout_keep_alive=75,
            timeout_graceful_shutdown=20,
        )
    )
    try:
        server.run()
    finally:
        remaining = node.close()
    if remaining:
        _say(
            f"stopped; {remaining} bytes acknowledged but not yet in storage stay in the write-ahead log "
            "and are written at the next start"
        )
    else:
        _say("stopped; everything acknowledged is in storage")
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    from correlator.rollup import keep_kpi_rollup
    from correlator.sla import parse_sla
    from correlator.summary import keep_stall_due
    from storage.client import open_client
    from storage.schema import migrate

    config = load_config(args.config)
    url = config.storage.url
    _say(f"migrating {mask_url(url) if url else f'embedded store in {args.data_dir}'}")
    client = open_client(url, args.data_dir)
    version = migrate(client, config.storage, _say)
    keep_stall_due(client, parse_sla(config.sla), _say)
    keep_kpi_rollup(client, _say)
    _say(f"schema at version {version}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        _say(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
