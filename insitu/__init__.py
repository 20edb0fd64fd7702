"""insitu: co-design of compute-in-memory chips that learn on-chip."""

__version__ = "0.1.0"
