"""Test session set-up: one torch thread per worker (pytest -n 2 on 2 cores would oversubscribe)."""

import torch

torch.set_num_threads(1)
