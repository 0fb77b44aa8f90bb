"""Worker telemetry: Prometheus metrics, the per-session conversation observer, usage records, tracing
(logging is voxfleet.telemetry.logging_setup, shared with every component)."""
