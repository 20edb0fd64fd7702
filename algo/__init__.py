"""Algorithm layer: hardware-aware training (torch), learning rules, device models, golden model."""
