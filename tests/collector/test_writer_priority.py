"""The embedded engine runs the node's storage writes at a lower CPU priority than its reads.

On two busy cores the writer's inserts and correlation took the CPU from the decode workers and
the HTTP loop, and acknowledgements waited (bench: ingest.otlp.ack_p99_ms, ~110 → ~75 ms at half
load with the writes at nice 10); the write-ahead log holds what waits meanwhile.
"""

from __future__ import annotations

from pathlib import Path

from storage.client import BACKGROUND_NICE
from tests.support import in_process_node


def test_the_writer_clients_queries_run_at_background_priority_and_reads_do_not(tmp_path: Path) -> None:
    with in_process_node(tmp_path / "data") as live:
        setting = "SELECT getSetting('os_threads_nice_value_query')"
        assert live.node.raw_sink.insert_client.query(setting).result_rows == [(BACKGROUND_NICE,)]
        assert live.node.raw_sink.client.query(setting).result_rows == [(BACKGROUND_NICE,)]
        assert live.node.query_client.query(setting).result_rows == [(0,)]
