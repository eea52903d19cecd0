"""``milepost dashboard``: Streamlit serving ``dashboard/app.py`` against a running node's API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dashboard.settings import API_TOKEN_ENV, API_URL_ENV, DEFAULT_API
from milepost.config import ConfigError

APP = Path(__file__).resolve().parent / "app.py"


def register(commands: Any) -> None:
    """Add the ``dashboard`` subcommand to the ``milepost`` parser's subcommands."""
    parser = commands.add_parser(
        "dashboard",
        help="serve the Streamlit dashboard against a running node",
        description=(
            "Serve the dashboard (Order, SKU, Operations and KPI pages). It reads only the node's HTTP "
            "API. Deep links: /?order=KEY, /?sku=SKU, /?promotion=ID."
        ),
    )
    parser.add_argument("--api", default=DEFAULT_API, help=f"the node's base URL (default {DEFAULT_API})")
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument(
        "--token", help=f"the API's read token, if it requires one (default: the {API_TOKEN_ENV} variable)"
    )
    parser.set_defaults(handler=dashboard_command)


def _api_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Flag '--api' has value '{text}'. Must be an http(s) URL such as {DEFAULT_API}.")
    return text.strip().rstrip("/")


def streamlit_command(port: int, host: str) -> list[str]:
    """``streamlit run`` for the packaged app: headless, no usage statistics, no file watching."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
        "--theme.primaryColor",
        "#0072B2",
        # dashboard/static holds the plotly.js bundle the order page's charts are drawn with.
        "--server.enableStaticServing",
        "true",
    ]


def dashboard_command(args: argparse.Namespace) -> int:
    api = _api_url(args.api)
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"Flag '--port' has value '{args.port}'. Must be 1 to 65535.")
    env = dict(os.environ)
    env[API_URL_ENV] = api
    token = args.token if args.token is not None else env.get(API_TOKEN_ENV, "")
    if token:
        env[API_TOKEN_ENV] = token
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"milepost: dashboard on http://{shown}:{args.port} reading {api}", file=sys.stderr, flush=True)
    print(
        f"milepost: deep links: http://{shown}:{args.port}/?order=KEY  /?sku=SKU  /?promotion=ID",
        file=sys.stderr,
        flush=True,
    )
    # Streamlit takes this process over, so a signal to `milepost dashboard` reaches it directly.
    os.execvpe(sys.executable, streamlit_command(args.port, args.host), env)
    return 0  # not reached
