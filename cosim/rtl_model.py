"""Hardware-aware training with the generated chip in the loop, checked against the golden model.

This module owns :class:`RtlCheckedMLP`: a :class:`~insitu.algo.hardware.HardwareMLP` (the
vectorized integer golden model) whose every training step (or every ``rtl_every``-th) also
runs on a :class:`~.session.ChipSession`. The RTL batch runs in a second thread while the
golden model computes the same step (ctypes releases the GIL), so the two use both cores; their
output codes must agree bit for bit, and the stored weights are compared every
``weight_check_every`` RTL batches and before every evaluation; with ``rtl_every`` > 1 after
every RTL batch instead (the golden model moves the weights on before anything else could
compare them). Weight re-loads the simulation needs are counted as harness traffic, not as
the chip's off-chip training traffic. The first disagreement raises
:class:`Mismatch` with a readable diff: which value, which layer, which sample.

The chip is brought up to date lazily: after a resume, a skipped batch or a plan change (ADC
calibration, the learning-rate schedule's extra shift) the weights and/or the plan registers
are written before the next RTL batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..algo.hardware import HardwareMLP
from ..algo.plan import IntegerPlan
from ..config import DesignError, DesignPoint
from .session import BatchResult, ChipSession

__all__ = [
    "CosimStats",
    "Mismatch",
    "RtlCheckedMLP",
    "check_design",
    "output_mismatch",
    "weights_mismatch",
]


class Mismatch(RuntimeError):
    """The RTL and the golden model disagree; the message is the readable diff."""


def check_design(dp: DesignPoint, rtl_every: int = 1) -> None:
    """Refuse design points the deterministic RTL cannot reproduce bit for bit, and a
    ``rtl_every`` below 1."""
    if rtl_every < 1:
        raise DesignError(f"--rtl-every = {rtl_every}: allowed: an integer >= 1")
    if dp.learning.mode != "hardware":
        raise DesignError(
            f"learning.mode = {dp.learning.mode!r}: co-simulation runs the integer contract; "
            "allowed: 'hardware'"
        )
    if dp.array.device_effects:
        raise DesignError(
            "array.device_effects = true: device nonidealities (nonlinear updates, C2C noise, "
            "read noise) live in the algorithm's device model and the RTL is deterministic; "
            "set array.device_effects=false to co-simulate"
        )


def diff_table(
    what: str, got: np.ndarray, want: np.ndarray, index_names: Sequence[str], limit: int = 8
) -> str:
    """``what``: the differing entries as ``name[i, j]: RTL x, golden y`` lines."""
    bad = np.argwhere(got != want)
    lines = [f"{what}: {len(bad)} of {want.size} values differ"]
    for idx in bad[:limit]:
        where = ", ".join(f"{n} {int(i)}" for n, i in zip(index_names, idx, strict=True))
        lines.append(f"  {where}: RTL {int(got[tuple(idx)])}, golden {int(want[tuple(idx)])}")
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


def output_mismatch(
    context: str, got: np.ndarray, want: np.ndarray, labels: np.ndarray
) -> Mismatch | None:
    """The Mismatch of a batch whose output codes differ (*context* names the batch)."""
    if np.array_equal(got, want):
        return None
    return Mismatch(
        f"{context}: output codes differ between the RTL and the golden model\n"
        + diff_table("outputs", got, want, ("sample", "class"))
        + f"\n  labels of the batch: {labels.tolist()}"
    )


def weights_mismatch(
    context: str, got: Sequence[np.ndarray], want: Sequence[np.ndarray]
) -> Mismatch | None:
    """The Mismatch of the first layer whose weights differ, None when all agree."""
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if not np.array_equal(g, w):
            return Mismatch(
                f"{context}: weights of layer {i} differ between the RTL and the golden "
                f"model\n" + diff_table(f"W{i}", g, w, ("input", "output"))
            )
    return None


@dataclass
class CosimStats:
    """What the co-simulation has run and checked so far (cumulative, kept in checkpoints)."""

    rtl_batches: int = 0
    rtl_samples: int = 0
    golden_only_batches: int = 0
    checked_outputs: int = 0
    weight_checks: int = 0
    mismatches: int = 0
    rtl_seconds: float = 0.0  # wall time inside the RTL calls
    counters: dict[str, int] = field(default_factory=dict)  # chip counters, training batches
    host_words: int = 0
    verify_bits: int = 0  # data bits of read-back checks, not of training

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CosimStats:
        return cls(**{**d, "counters": dict(d.get("counters", {}))})


class RtlCheckedMLP(HardwareMLP):
    """The golden model with the chip running the same steps beside it."""

    def __init__(
        self,
        dp: DesignPoint,
        session: ChipSession,
        *,
        plan: IntegerPlan | None = None,
        rtl_every: int = 1,
        weight_check_every: int = 50,
    ) -> None:
        check_design(dp, rtl_every)
        super().__init__(dp, plan)
        self.session = session
        self.rtl_every = rtl_every
        self.weight_check_every = max(1, weight_check_every)
        self.stats = CosimStats()
        self._batch_index = 0
        self._weights_stale = True  # the chip holds other weights than the model
        self._plan_on_chip: tuple[IntegerPlan, int] | None = None
        self._since_check = 0
        # counters of chips before a resume: a fresh chip counts from zero again
        self._counter_base: dict[str, int] = {}
        self._words_base = 0
        self._verify_base = 0

    # -- keeping the chip in step ---------------------------------------------------------
    def _sync(self) -> None:
        same_plan = False
        if self._weights_stale:
            # only the very first load is the chip's own traffic; a chip keeps its weights
            reload = self._batch_index > 1
            self.session.load_weights([w.numpy() for w in self.weights], harness=reload)
            self._weights_stale = False
            # the plan registers are rewritten too; if only the step moved (the golden model
            # ran batches alone), that is the harness catching the chip up, not training
            same_plan = (
                reload and self._plan_on_chip is not None and (self._plan_on_chip[0] == self.plan)
            )
            self._plan_on_chip = None
        if self._plan_on_chip != (self.plan, self.step):
            self.session.set_plan(self.plan, self.step, harness=same_plan)
            self._plan_on_chip = (self.plan, self.step)

    def check_weights(self, context: str) -> None:
        """Read every weight from the chip and compare with the golden model's."""
        if self._weights_stale:
            return
        got = self.session.read_weights()
        self.stats.weight_checks += 1
        # the counters again, so that they hold the read-back the harness subtracts
        ctr = self.session.read_counters()
        self.stats.counters = {k: v + self._counter_base.get(k, 0) for k, v in ctr.items()}
        err = weights_mismatch(context, got, [w.numpy() for w in self.weights])
        if err is not None:
            self.stats.mismatches += 1
            raise err

    # -- HardwareMLP overrides ------------------------------------------------------------
    def train_step(self, a0: Tensor, labels: Tensor) -> tuple[Tensor, float]:
        index = self._batch_index
        self._batch_index += 1
        if index % self.rtl_every:
            self.stats.golden_only_batches += 1
            out = super().train_step(a0, labels)
            self._weights_stale = True
            return out
        self._sync()
        a_np = a0.to(torch.int64).numpy()
        y_np = labels.numpy()
        result: list[BatchResult] = []
        error: list[BaseException] = []

        def rtl() -> None:
            try:
                result.append(self.session.run_batch(a_np, y_np))
            except BaseException as exc:  # re-raised in the caller's thread
                error.append(exc)

        step = self.step
        t0 = time.perf_counter()
        worker = threading.Thread(target=rtl, name="insitu-rtl")
        worker.start()
        try:
            o, mse = super().train_step(a0, labels)
        finally:
            worker.join()
        self.stats.rtl_seconds += time.perf_counter() - t0
        if error:
            raise error[0]
        res = result[0]
        self._plan_on_chip = (self.plan, self.step)  # the chip counted its step up as well
        self.stats.rtl_batches += 1
        self.stats.rtl_samples += len(a_np)
        self.stats.counters = {k: v + self._counter_base.get(k, 0) for k, v in res.counters.items()}
        self.stats.host_words = self._words_base + self.session.host_words
        self.stats.verify_bits = self._verify_base + self.session.verify_bits
        want = o.numpy()
        self.stats.checked_outputs += want.size
        err = output_mismatch(f"batch {index} (training step {step})", res.outputs, want, y_np)
        if err is not None:
            self.stats.mismatches += 1
            raise err
        self._since_check += 1
        # with rtl_every > 1 the golden model moves the weights on before the next RTL batch
        # or evaluation, so this is the only moment the chip's updates can be compared
        if self._since_check >= self.weight_check_every or self.rtl_every > 1:
            self._since_check = 0
            self.check_weights(f"after batch {index} (training step {step})")
        return o, mse

    def predict(self, a0: Tensor, chunk: int = 256) -> Tensor:
        self.check_weights(f"before evaluation, after {self._batch_index} batches")
        self._since_check = 0
        return super().predict(a0, chunk)

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["cosim"] = self.stats.to_dict()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        if "cosim" in d:
            self.stats = CosimStats.from_dict(d["cosim"])
            self._counter_base = dict(self.stats.counters)
            self._words_base = self.stats.host_words - self.session.host_words
            self._verify_base = self.stats.verify_bits - self.session.verify_bits
        # a fresh chip holds none of this: load everything before the next RTL batch
        self._weights_stale = True
        self._plan_on_chip = None
