"""Shell: live signals (Prometheus)."""
