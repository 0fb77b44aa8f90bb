"""Worker telemetry: Prometheus metrics, the per-session conversation observer, usage records, logs, tracing."""
