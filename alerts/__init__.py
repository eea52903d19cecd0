"""Alerts: rules over the business state, an Alertmanager-grade lifecycle, delivery through apprise.

Pipeline of one evaluation: ``sources`` (current problems, from ClickHouse) → ``lifecycle``
(pending / firing / resolved per fingerprint) → ``dispatch`` (routes, groups, inhibition,
silences, notification log) → ``notify`` (apprise, retries) with ``content`` writing the words.
"""
