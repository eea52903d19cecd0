"""The collector: receives spans and events, validates them, makes them durable, writes them to ClickHouse."""
