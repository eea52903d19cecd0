"""Milepost's storage: the ClickHouse schema, its migrations and the rows that cross into it."""
