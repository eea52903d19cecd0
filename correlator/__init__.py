"""The correlator: milestones, aliases, order and SKU timelines, verdicts; the query API reads through it."""
