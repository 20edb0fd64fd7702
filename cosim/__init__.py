"""Co-simulation layer: RTL in the training loop, latency/energy/area reports."""
