"""A worker's health: consumer probes, Prometheus metric families, /healthz /readyz /metrics."""
