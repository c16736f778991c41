"""Observability: what the gateway tells operators about its calls (tracing, metrics)."""
