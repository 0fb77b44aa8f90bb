"""Telemetry every voxfleet component shares: one logging setup, one tracing setup, build info (voxfleet.telemetry)."""
