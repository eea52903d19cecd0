"""The node (``milepost serve``): storage, write-ahead log, writer, ingest and query endpoints in one process.

chDB allows one engine per process, so this process owns the data directory; every
other component (dashboard, simulator, replay) talks to it over HTTP.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

import grpc
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from alerts.api import AlertEndpoints
from alerts.config import parse_alerts
from alerts.engine import AlertEngine
from collector.decoding import DecoderPool, DecodeSettings
from collector.grpc import start_grpc
from collector.http import IngestEndpoints
from collector.ingest import Ingest
from collector.metrics import IngestMetrics
from collector.quarantine import Quarantine
from collector.sink import ClickHouseSink, RowSink
from collector.wal import WriteAheadLog
from collector.writer import StorageWriter
from correlator.api import QueryEndpoints
from correlator.catalog import PromotionReader, SkuReader
from correlator.derived import Derivation
from correlator.kpis import KpiReader
from correlator.mapping import Mapper
from correlator.orders import OrderReader
from correlator.propagation import parse_promotions
from correlator.rollup import keep_kpi_rollup
from correlator.rules import parse_mapping
from correlator.sink import CorrelatingSink
from correlator.sla import parse_sla
from correlator.summary import keep_stall_due
from correlator.traces import TraceReader
from milepost.auth import Authenticator
from milepost.config import Config, mask_url
from storage.client import is_embedded, open_client, with_background_priority
from storage.schema import migrate

log = logging.getLogger(__name__)


class DataDirInUse(Exception):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(f"Data directory '{data_dir}' is in use by another milepost serve; stop it first.")


class Node:
    """Everything ``milepost serve`` runs. ``wrap_sink`` lets tests inject storage faults."""

    def __init__(
        self,
        config: Config,
        data_dir: Path,
        wrap_sink: Callable[[RowSink], RowSink] = lambda sink: sink,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.wrap_sink = wrap_sink
        self.progress = progress
        self.metrics = IngestMetrics()
        self.auth = Authenticator(config.tokens)
        # Correlator settings are validated before anything starts, so a bad rule fails fast.
        self.sla = parse_sla(config.sla)
        self.mapping = parse_mapping(config.mapping)
        self.promotions = parse_promotions(config.promotions)
        self.alert_settings = parse_alerts(config.alerts)
        self.alerts: AlertEngine | None = None
        self._lock_file: IO[str] | None = None
        self.unwritten_bytes = 0
        self._clients: list[Client] = []
        self.grpc_server: grpc.Server | None = None

    def open(self) -> None:
        """Lock the data directory, migrate the schema, replay the log, start the writer."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        url = self.config.storage.url
        where = f"embedded ClickHouse in {self.data_dir}" if is_embedded(url) else mask_url(url)
        self.progress(f"opening storage: {where}")
        writer_client = with_background_priority(open_client(url, self.data_dir), url)
        # A second writing client: a batch's raw rows go in beside the rows derived from them.
        insert_client = with_background_priority(open_client(url, self.data_dir), url)
        self.query_client = open_client(url, self.data_dir)
        self._clients = [writer_client, insert_client, self.query_client]
        migrate(writer_client, self.config.storage, self.progress)
        keep_stall_due(writer_client, self.sla, self.progress)
        keep_kpi_rollup(writer_client, self.progress)
        self.wal = WriteAheadLog(
            self.data_dir / "wal", self.config.wal.segment_bytes, self.config.wal.max_bytes
        )
        backlog = self.wal.depth_bytes()
        if backlog:
            self.progress(f"replaying {backlog} bytes of acknowledged data from the write-ahead log")
        self.raw_sink = ClickHouseSink(writer_client, insert_client, self.metrics.insert_latency.observe)
        self.sink = self.wrap_sink(CorrelatingSink(self.raw_sink, writer_client, Mapper(self.mapping)))
        self.writer = StorageWriter(
            self.wal,
            self.sink,
            self.metrics,
            self.config.writer.batch_rows,
            self.config.writer.flush_interval,
        )
        self.writer.start()
        self.alerts = AlertEngine(self.query_client, self.alert_settings, self.sla, self.promotions)
        self.alerts.start()
        workers = self.config.server.decode_workers or (os.cpu_count() or 2)
        settings = DecodeSettings(
            self.config.privacy.hash_fields,
            str(self.config.privacy.hash_key),
            self.config.contracts,
            Derivation(self.config.mapping),  # the correlator's mapping runs beside decoding
        )
        self.progress(f"starting {workers} decode workers")
        self.decoder = DecoderPool(settings, workers)
        self.decoder.warm_up()
        self.ingest = Ingest(self.wal, self.decoder, self.metrics, lambda: self.writer.available)
        self.metrics.gauge(
            "milepost_wal_bytes", "Acknowledged bytes not yet in storage.", self.wal.depth_bytes
        )
        self.metrics.gauge(
            "milepost_wal_records",
            "Records committed to the log since start.",
            lambda: self.wal.records_committed,
        )
        self.metrics.gauge(
            "milepost_storage_up", "1 when the last write succeeded.", lambda: self.writer.available
        )

    def ready(self) -> tuple[bool, str]:
        if not self.writer.available:
            return False, f"unavailable: {self.writer.last_error[:200]}"
        try:
            self.query_client.command("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return False, f"unreachable: {str(exc)[:200]}"
        return True, "ok"

    def app(self) -> Starlette:
        ingest = IngestEndpoints(
            self.ingest,
            self.auth,
            self.metrics,
            self.config.server.max_body_bytes,
            self.config.server.max_inflight_requests,
            self.ready,
            Quarantine(self.query_client, self.ingest, self.decoder),
        )
        promotions = PromotionReader(self.query_client, self.promotions)
        query = QueryEndpoints(
            TraceReader(self.query_client),
            OrderReader(self.query_client, self.sla),
            SkuReader(self.query_client),
            promotions,
            KpiReader(self.query_client, promotions),
            self.auth,
        )

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            yield
            self.close()

        alerts = AlertEndpoints(self.alerts, self.auth).routes() if self.alerts is not None else []
        return Starlette(routes=[*ingest.routes(), *query.routes(), *alerts], lifespan=lifespan)

    def start_grpc(self, host: str, port: int) -> None:
        if port:
            self.grpc_server = start_grpc(
                self.ingest, self.auth, host, port, self.config.server.max_body_bytes
            )

    def close(self) -> int:
        """Stop taking data, write what was acknowledged to storage, release the directory.

        Returns the acknowledged bytes not yet in storage (storage down, or a backlog longer
        than the shutdown allows): they stay in the log and are written at the next start.
        """
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts = None
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=5).wait(10)
            self.grpc_server = None
        if getattr(self, "writer", None) is None:
            return self.unwritten_bytes
        self.writer.stop(timeout=120)
        self.unwritten_bytes = self.wal.depth_bytes()
        self.wal.close()
        self.decoder.close()
        self.raw_sink.close()
        for client in self._clients:
            client.close()
        self._clients = []
        self.writer = None  # type: ignore[assignment]
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        return self.unwritten_bytes

    def _lock_data_dir(self) -> None:
        handle = open(self.data_dir / "node.lock", "w")  # noqa: SIM115 - held for the node's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirInUse(self.data_dir) from None
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle
