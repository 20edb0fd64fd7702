"""Float training of MLPs with BP, FA and DFA as explicit per-layer updates.

No autograd: each rule computes every layer's delta itself, which is what lets the hardware
path put quantizers and device models inside each layer's update. The feedback matrices are the
contract's LFSR matrices scaled by 2**-delta_shift, the same ones the hardware path uses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from insitu.config import DesignPoint

from .plan import IntegerPlan, make_plan


def lr_factor(dp: DesignPoint, epoch: int) -> float:
    """The schedule's learning-rate factor for an epoch (0-based)."""
    lr = dp.learning
    if lr.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / lr.epochs))
    return 1.0


class FloatMLP:
    """A bias-free ReLU MLP (the chip has no bias) trained by an explicit learning rule."""

    def __init__(self, dp: DesignPoint, plan: IntegerPlan | None = None) -> None:
        self.dp = dp
        self.plan = plan or make_plan(dp)
        gen = torch.Generator().manual_seed(dp.learning.seed)
        self.weights: list[Tensor] = []
        for fan_in, fan_out in zip(dp.network.layers[:-1], dp.network.layers[1:], strict=True):
            bound = math.sqrt(6.0 / fan_in)
            w = (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            self.weights.append(w.to(torch.float32))
        self.feedback = (
            [
                torch.from_numpy(self.plan.feedback(i).copy()).to(torch.float32)
                * 2.0 ** -self.plan.layers[i].delta_shift
                for i in range(len(self.weights) - 1)
            ]
            if self.plan.rule != "bp"
            else []
        )
        lr, opt = dp.learning.lr, dp.learning.optimizer
        wd = dp.learning.weight_decay
        self.opt: torch.optim.Optimizer
        if opt == "adam":
            self.opt = torch.optim.Adam(self.weights, lr=lr, weight_decay=wd)
        elif opt == "momentum":
            self.opt = torch.optim.SGD(self.weights, lr=lr, momentum=0.9, weight_decay=wd)
        else:
            self.opt = torch.optim.SGD(self.weights, lr=lr, weight_decay=wd)

    def start_epoch(self, epoch: int) -> None:
        """Set the epoch's learning rate from the schedule (a function of the epoch only)."""
        scale = lr_factor(self.dp, epoch)
        for group in self.opt.param_groups:
            group["lr"] = self.dp.learning.lr * scale

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        hidden = []
        h = x
        for w in self.weights[:-1]:
            h = torch.relu(h @ w)
            hidden.append(h)
        return h @ self.weights[-1], hidden

    def predict(self, x: Tensor, chunk: int = 4096) -> Tensor:
        return torch.cat(
            [self.forward(x[i : i + chunk])[0].argmax(1) for i in range(0, len(x), chunk)]
        )

    def train_step(self, x: Tensor, labels: Tensor) -> tuple[Tensor, float]:
        """One step; returns logits and the mean cross-entropy."""
        logits, hidden = self.forward(x)
        p = torch.softmax(logits, 1)
        onehot = torch.zeros_like(p)
        onehot[torch.arange(len(labels)), labels] = 1.0
        e = p - onehot
        n = len(self.weights)
        deltas: list[Tensor] = [e] * n
        for i in range(n - 2, -1, -1):
            if self.plan.rule == "bp":
                u = deltas[i + 1] @ self.weights[i + 1].t()
            elif self.plan.rule == "dfa":
                u = e @ self.feedback[i]
            else:
                u = deltas[i + 1] @ self.feedback[i]
            deltas[i] = u * (hidden[i] > 0)
        inputs = [x, *hidden]
        for i, w in enumerate(self.weights):
            w.grad = inputs[i].t() @ deltas[i] / len(x)
        self.opt.step()
        loss = float(-torch.log(p[torch.arange(len(labels)), labels].clamp_min(1e-12)).mean())
        return logits, loss

    def state_dict(self) -> dict[str, Any]:
        return {"weights": [w.detach().clone() for w in self.weights], "opt": self.opt.state_dict()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        with torch.no_grad():
            for w, v in zip(self.weights, d["weights"], strict=True):
                w.copy_(v)
        self.opt.load_state_dict(d["opt"])
