"""``milepost demo``: a node, a simulated estate with faults, the dashboard and an alert inbox.

The node runs as a child process (``milepost serve``) on a fresh store with short SLAs (the
defaults divided by the simulation's speed), so stalls appear within minutes; the dashboard runs
as another child (``milepost dashboard``) when that command exists. The simulator runs here:
history first, as fast as the node takes it, then live traffic until Ctrl-C. Ctrl-C (or SIGTERM)
stops the simulator, then the dashboard, then the node, which writes what it acknowledged.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
import yaml

from milepost.config import ConfigError
from simulator.faults import FAULTS
from simulator.outbox import NodeOutbox
from simulator.progress import say
from simulator.receiver import NotificationReceiver
from simulator.runner import run
from simulator.scenario import Scenario
from simulator.upload import NodeRefused, wait_for_node

SPEED = 60.0
STORES = 12
SKUS = 40
LIVE_ORDERS_PER_MINUTE = 20.0
HISTORY_ORDERS_PER_MINUTE = 1.0
EPISODE_S = 240.0
MILEPOST = [sys.executable, "-m", "milepost.cli"]


def _within(default_s: float) -> str:
    return f"{max(default_s / SPEED, 1):g}s"


def demo_config(notify_url: str | None, dashboard_url: str) -> dict[str, Any]:
    """Short SLAs (the defaults divided by ``SPEED``), so the estate's stalls show within minutes.

    ready→fulfilled stays a day: customers collect in opening hours, which no speed compresses.
    """
    sla = [
        {"from": "accepted", "to": "paid", "within": _within(15 * 60)},
        {"from": "paid", "to": "reserved", "within": _within(10 * 60)},
        {"from": "reserved", "to": "ready", "within": _within(2 * 3600)},
        {"from": "ready", "to": "fulfilled", "within": "1d"},
        {"from": "returned", "to": "refunded", "within": _within(86400)},
        {"from": "fulfilled", "to": "reconciled", "within": _within(86400)},
        {"from": "refunded", "to": "reconciled", "within": _within(86400)},
    ]
    config: dict[str, Any] = {"sla": sla, "promotions": {"lag_threshold": _within(600)}}
    if notify_url is not None:
        config["alerts"] = {
            "evaluation_interval": "5s",
            "group_wait": "5s",
            "group_interval": "1m",
            "repeat_interval": "1h",
            "dashboard_url": dashboard_url,
            # for: 10s, so a figure the node is still writing (a count's systems split over two
            # batches) alerts nobody.
            "rules": [
                {"name": "stalled-orders", "kind": "stalled_orders", "for": "10s", "severity": "warning",
                 "group_by": ["store_id"], "max_age": "1h"},
                {"name": "promotion-stragglers", "kind": "promotion_lag", "for": "10s", "severity": "warning",
                 "max_age": "1h"},
                {"name": "failed-postings", "kind": "failed_postings", "for": "10s", "severity": "critical",
                 "max_age": "1h"},
                {"name": "state-mismatch", "kind": "state_mismatch", "for": "10s", "severity": "warning",
                 "grace": "1m", "max_age": "1h"},
                {"name": "stock-disagrees", "kind": "inventory_variance", "for": "10s", "severity": "info"},
            ],
            "routes": [{"notify": [notify_url]}],
        }  # fmt: skip
    return config


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def dashboard_available() -> bool:
    """Whether this installation has ``milepost dashboard`` (it is a separate component)."""
    result = subprocess.run([*MILEPOST, "dashboard", "--help"], capture_output=True, timeout=60)
    return result.returncode == 0


class Child:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
        self._log: IO[bytes] = log_path.open("ab")
        # Its own process group: Ctrl-C reaches the demo, which stops the children in order.
        self.process = subprocess.Popen(
            args, stdout=self._log, stderr=self._log, env=env, start_new_session=True
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return int(self.process.returncode)

    def tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])


class Demo:
    def __init__(
        self,
        port: int,
        dashboard_port: int,
        data_dir: Path | None,
        browser: bool,
        quick: bool,
        seed: int,
        stop: threading.Event,
    ) -> None:
        self.port = port
        self.dashboard_port = dashboard_port
        self.base = data_dir
        self.browser = browser
        self.quick = quick
        self.seed = seed
        self.stop = stop
        self.api = f"http://127.0.0.1:{port}"
        self.dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        self.children: list[Child] = []

    def run(self) -> int:
        for flag, port in (("--port", self.port), ("--dashboard-port", self.dashboard_port)):
            if not port_free(port):
                raise ConfigError(f"Flag '{flag}' has value '{port}'. That port is in use; pick another.")
        base = self.base if self.base is not None else Path(tempfile.mkdtemp(prefix="milepost-demo-"))
        base.mkdir(parents=True, exist_ok=True)
        inbox = NotificationReceiver(base / "notifications.jsonl", say)
        inbox.start()
        try:
            node = self._start_node(base, inbox.url)
            if node is None:
                return 1
            dashboard = self._start_dashboard(base)
            self._tell(base, node.alerts, dashboard is not None)
            if self.browser:
                webbrowser.open(self.dashboard_url if dashboard is not None else f"{self.api}/api/v1/kpis")
            watchdog = threading.Thread(target=self._watch, name="milepost-demo-watchdog", daemon=True)
            watchdog.start()
            return self._simulate()
        finally:
            for child in reversed(self.children):
                code = child.stop()
                say(f"{child.name} stopped (exit {code})")
            inbox.stop()
            say(f"demo stopped; its data stays in {base}")

    def _start_node(self, base: Path, notify_url: str) -> _Node | None:
        for alerts in (True, False):
            config_path = base / "milepost.yaml"
            config = demo_config(notify_url if alerts else None, self.dashboard_url)
            config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            args = [*MILEPOST, "serve", "--config", str(config_path), "--data-dir", str(base / "store")]
            args += ["--port", str(self.port), "--grpc-port", "0"]
            say(f"starting the node on {self.api} (store in {base / 'store'})")
            child = Child("node", args, base / "node.log")
            self.children.append(child)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and child.alive() and not self.stop.is_set():
                if wait_for_node(self.api, self.stop, timeout=0.5):
                    return _Node(child, alerts)
            if child.alive():
                say(f"the node did not become ready; see {child.log_path}")
                return None
            self.children.remove(child)
            child.stop()
            if alerts and "alerts" in child.tail(20):
                say("the node refused the demo's alerts section; running without alerts: " + child.tail(1))
                continue
            say(f"the node exited with {child.process.returncode}: {child.tail(3)}")
            return None
        return None

    def _start_dashboard(self, base: Path) -> Child | None:
        if not dashboard_available():
            say("the dashboard is not part of this installation ('milepost dashboard' is missing); API only")
            return None
        args = [*MILEPOST, "dashboard", "--api", self.api, "--port", str(self.dashboard_port)]
        child = Child("dashboard", args, base / "dashboard.log")
        self.children.append(child)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and child.alive() and not self.stop.is_set():
            try:
                if requests.get(f"{self.dashboard_url}/_stcore/health", timeout=1).status_code == 200:
                    return child
            except requests.RequestException:
                pass
            self.stop.wait(0.3)
        say(f"the dashboard did not come up; see {child.log_path}")
        return None

    def _tell(self, base: Path, alerts: bool, dashboard: bool) -> None:
        days = 1 if self.quick else 7
        lines = [
            f"a retail estate of {STORES} stores and {SKUS} SKUs: {days} day(s) of history, then live "
            "traffic "
            f"with faults (seed {self.seed}, flows {SPEED:g}x faster than life)",
            f"  dashboard  {self.dashboard_url}" if dashboard else "  dashboard  not available",
            f"  API        {self.api}/api/v1/orders?status=stalled",
            f"  alerts     printed here and kept in {base / 'notifications.jsonl'}"
            if alerts
            else "  alerts     off (the node refused the alerts section)",
            f"  logs       {base / 'node.log'}" + (f", {base / 'dashboard.log'}" if dashboard else ""),
            "what to look at, live (the story repeats every four minutes):",
            "  - a promotion goes live ~10s in; two stores straggle: one activates late, one never does",
            "  - the warehouse slows down ~25s in: orders stall waiting for stock reservation, then picking",
            "  - a store goes offline ~35s in, queues its POS events, and replays them ~2 minutes later",
            "  - the payment gateway fails ~50s in: orders stall before payment; some are cancelled",
            "  - ERP postings fail ~50s in: failed postings show on the orders, stuck before reconciliation",
            "  - ~70s in, an adjustment misses one system: that SKU's stock differs between ERP, POS and web",
            "  - ~95s in, a cancelled pickup order is handed over anyway: a state mismatch on its Order page",
            "  look up any id a store manager holds: web order, pickup code, POS receipt or ERP document",
            "Ctrl-C stops everything.",
        ]
        for line in lines:
            say(line)

    def _watch(self) -> None:
        while not self.stop.wait(1.0):
            for child in self.children:
                if not child.alive():
                    say(
                        f"the {child.name} stopped unexpectedly ({child.process.returncode}): {child.tail(3)}"
                    )
                    self.stop.set()
                    return

    def _simulate(self) -> int:
        """History first, then live traffic in a run of its own, so the story starts when the history is in.

        The two runs share the seed (the same estate) but not their ids: those derive from each run's start.
        """
        live = Scenario(
            seed=self.seed,
            stores=STORES,
            skus=SKUS,
            orders_per_minute=LIVE_ORDERS_PER_MINUTE,
            duration_s=0,
            faults=frozenset(FAULTS),
            speed=SPEED,
            episode_s=EPISODE_S,
        )
        history = dataclasses.replace(
            live,
            history_orders_per_minute=HISTORY_ORDERS_PER_MINUTE,
            duration_s=1,  # too short for a story: history only
            backfill_days=1 if self.quick else 7,
        )
        for scenario in (history, live):
            try:
                report = run(scenario, NodeOutbox(self.api, None, self.stop), self.stop)
            except NodeRefused as exc:
                say(f"{exc}; stopping.")
                return 1
            if report.interrupted:
                break
            if scenario is history:
                say("the history is in; live traffic starts now, and the story above with it")
        for line in report.summary()[:3]:
            say(line)
        return 0


@dataclass(frozen=True)
class _Node:
    child: Child
    alerts: bool
