"""The Streamlit dashboard: Order, SKU, Operations and KPI pages, reading only the node's HTTP API."""
