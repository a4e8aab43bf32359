"""`make demo`: frugal's main job on an embedded default — a simulated fleet, live."""
