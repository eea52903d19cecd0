"""A seeded retail estate that emits OTLP spans and CloudEvents to a node, with faults and ground truth."""
