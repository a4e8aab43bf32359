"""Replays a workload through frugal's cost, placement and policy code (the paper's case study)."""
