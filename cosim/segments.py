"""Co-simulation on several chip instances at once: each checks a contiguous run of batches.

:class:`SegmentedRtlMLP` is the golden model (:class:`~insitu.algo.hardware.HardwareMLP`)
with ``K`` chip instances (:class:`~.session.ChipSession`, one thread each; ctypes releases
the GIL, so they run on separate cores). Every epoch is cut into ``K`` contiguous segments of
batches; instance ``k`` checks segment ``k``. The golden model trains ahead on the main thread
and hands each instance, at the start of its segment, the weights, the plan and the step as
they were at that batch; then, batch by batch, the inputs, labels and the output codes the
golden model computed. The instance loads the state (harness traffic, like a resume), runs
every batch of its segment on the RTL, and compares the outputs of every batch, the weights
every ``weight_check_every`` batches and at the end of the segment. Every sample still goes
through the RTL and every result is compared; the difference from one instance is only that
the weights at a segment's start come from the golden model instead of from the instance
before it, which the end-of-segment weight check of that instance has already compared (a
chip that produced different weights is reported there).

The golden model is far faster than the RTL, so all instances are busy at once: ``K``
instances on ``K`` cores train ``K`` times as many samples per second, less the state loads
(two per epoch and instance).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from ..algo.hardware import HardwareMLP
from ..algo.plan import IntegerPlan
from ..config import DesignError, DesignPoint
from .rtl_model import CosimStats, Mismatch, check_design, output_mismatch, weights_mismatch
from .session import ChipSession

__all__ = ["SegmentedRtlMLP"]


@dataclass
class _Batch:
    index: int  # batch number since the run started
    step: int  # the golden model's step before the batch
    a0: np.ndarray
    labels: np.ndarray
    outputs: np.ndarray  # what the golden model computed
    weights: list[np.ndarray] | None  # the golden weights after the batch, when to compare


@dataclass
class _Segment:
    instance: int
    weights: list[np.ndarray]
    plan: IntegerPlan
    step: int
    own_load: bool  # the chip's own first weight load (not harness traffic)
    items: queue.Queue[_Batch | list[np.ndarray] | None] = field(default_factory=queue.Queue)


class SegmentedRtlMLP(HardwareMLP):
    """The golden model with ``len(sessions)`` chip instances checking segments of each epoch."""

    def __init__(
        self,
        dp: DesignPoint,
        sessions: Sequence[ChipSession],
        *,
        batches_per_epoch: int,
        weight_check_every: int = 50,
    ) -> None:
        check_design(dp)
        if len(sessions) < 2:
            raise DesignError(f"--instances = {len(sessions)}: segments need at least 2")
        if batches_per_epoch < len(sessions):
            raise DesignError(
                f"--instances = {len(sessions)}: an epoch has only {batches_per_epoch} batches; "
                f"allowed: at most {batches_per_epoch}"
            )
        super().__init__(dp)
        self.sessions = list(sessions)
        self.batches_per_epoch = batches_per_epoch
        self.weight_check_every = max(1, weight_check_every)
        self.stats = CosimStats()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._batch_index = 0  # since the run (or the resume) started
        self._in_epoch = 0
        self._segment: _Segment | None = None
        self._since_check = 0
        self._pending: list[_Segment] = []
        self._wall_from: float | None = None
        self._chip_counters: list[dict[str, int]] = [{} for _ in sessions]
        self._counter_base: dict[str, int] = {}
        self._words_base = 0
        self._verify_base = 0
        self._fresh = True  # no checkpoint was loaded: the first load is the chip's own
        self._abort = False
        # called on the main thread with {"rtl_samples": n} (samples checked on the RTL so far)
        self.on_rtl: Callable[[dict[str, Any]], None] | None = None
        self._reported = 0.0
        self._jobs: list[queue.Queue[_Segment | None]] = [queue.Queue() for _ in sessions]
        self._threads = [
            threading.Thread(target=self._worker, args=(k,), name=f"insitu-rtl{k}", daemon=True)
            for k in range(len(sessions))
        ]
        for t in self._threads:
            t.start()

    # -- the chip instances ---------------------------------------------------------------
    def _worker(self, k: int) -> None:
        while (seg := self._jobs[k].get()) is not None:
            try:
                self._check_segment(seg)
            except BaseException as exc:  # reported to the main thread
                with self._lock:
                    if self._error is None:
                        self._error = exc
                # drain the segment so the main thread never blocks on it
                while seg.items.get() is not None:
                    pass
            finally:
                with self._lock:
                    self._pending.remove(seg)

    def _check_segment(self, seg: _Segment) -> None:
        if self._abort:
            while seg.items.get() is not None:
                pass
            return
        s = self.sessions[seg.instance]
        s.load_weights(seg.weights, harness=not seg.own_load)
        s.set_plan(seg.plan, seg.step, harness=not seg.own_load)
        where = f"chip instance {seg.instance}"
        while (item := seg.items.get()) is not None:
            if self._abort:  # the run is being given up: only drain
                continue
            if isinstance(item, list):  # the end of the segment: the golden weights
                self._compare_weights(seg.instance, item, f"{where}, at the end of its segment")
                continue
            res = s.run_batch(item.a0, item.labels)
            with self._lock:
                self.stats.rtl_batches += 1
                self.stats.rtl_samples += len(item.a0)
                self.stats.checked_outputs += item.outputs.size
                self._chip_counters[seg.instance] = res.counters
            context = f"batch {item.index} (training step {item.step}, {where})"
            self._fail_on(output_mismatch(context, res.outputs, item.outputs, item.labels))
            if item.weights is not None:
                self._compare_weights(
                    seg.instance, item.weights, f"{where}, after batch {item.index}"
                )

    def _compare_weights(self, k: int, want: list[np.ndarray], context: str) -> None:
        s = self.sessions[k]
        got = s.read_weights()
        # the counters again, so that they hold the read-back the harness subtracts
        counters = s.read_counters()
        with self._lock:
            self.stats.weight_checks += 1
            self._chip_counters[k] = counters
        self._fail_on(weights_mismatch(context, got, want))

    def _fail_on(self, err: Mismatch | None) -> None:
        if err is not None:
            with self._lock:
                self.stats.mismatches += 1
            raise err

    def _raise_error(self) -> None:
        with self._lock:
            err = self._error
        if err is not None:
            raise err
        now = time.perf_counter()
        if self.on_rtl is not None and now - self._reported > 0.5:
            self._reported = now
            self.on_rtl({"rtl_samples": self.stats.rtl_samples})

    def _weights_copy(self) -> list[np.ndarray]:
        return [w.numpy().copy() for w in self.weights]

    # -- HardwareMLP overrides ------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self._in_epoch = 0

    def train_step(self, a0: Tensor, labels: Tensor) -> tuple[Tensor, float]:
        self._raise_error()
        K, n = len(self.sessions), self.batches_per_epoch
        b = self._in_epoch
        part = min(K - 1, b * K // n)
        if self._segment is None or b == 0 or part != min(K - 1, (b - 1) * K // n):
            if self._segment is not None:
                self._segment.items.put(None)
            seg = _Segment(
                part,
                self._weights_copy(),
                self.plan,
                self.step,
                own_load=self._fresh and self._batch_index == 0 and part == 0,
            )
            self._segment = seg
            self._since_check = 0
            if self._wall_from is None:
                self._wall_from = time.perf_counter()
            with self._lock:
                self._pending.append(seg)
            self._jobs[part].put(seg)
        seg = self._segment
        step = self.step
        out, mse = super().train_step(a0, labels)
        self._since_check += 1
        check = self._since_check >= self.weight_check_every
        if check:
            self._since_check = 0
        seg.items.put(
            _Batch(
                self._batch_index,
                step,
                a0.numpy().astype(np.int32),
                labels.numpy().copy(),
                out.numpy().copy(),
                self._weights_copy() if check else None,
            )
        )
        self._batch_index += 1
        self._in_epoch += 1
        last = self._in_epoch == n or min(K - 1, self._in_epoch * K // n) != part
        if last:
            seg.items.put(self._weights_copy())
            seg.items.put(None)
            self._segment = None
        return out, mse

    def join(self) -> None:
        """Wait until every instance has checked everything handed to it; raise its error."""
        if self._segment is not None:  # an epoch cut short: close its segment
            self._segment.items.put(self._weights_copy())
            self._segment.items.put(None)
            self._segment = None
        while True:
            with self._lock:
                busy = bool(self._pending)
            if not busy:
                break
            self._raise_error()
            time.sleep(0.01)
        self._raise_error()
        if self._wall_from is not None:
            self.stats.rtl_seconds += time.perf_counter() - self._wall_from
            self._wall_from = None
        with self._lock:
            total: dict[str, int] = dict(self._counter_base)
            for c in self._chip_counters:
                for key, v in c.items():
                    total[key] = total.get(key, 0) + v
            self.stats.counters = total
            self.stats.host_words = self._words_base + sum(s.host_words for s in self.sessions)
            self.stats.verify_bits = self._verify_base + sum(s.verify_bits for s in self.sessions)

    def predict(self, a0: Tensor, chunk: int = 256) -> Tensor:
        self.join()
        return super().predict(a0, chunk)

    def state_dict(self) -> dict[str, Any]:
        self.join()
        d = super().state_dict()
        d["cosim"] = self.stats.to_dict()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        self._fresh = False
        if "cosim" in d:
            self.stats = CosimStats.from_dict(d["cosim"])
            self._counter_base = dict(self.stats.counters)
            self._words_base = self.stats.host_words - sum(s.host_words for s in self.sessions)
            self._verify_base = self.stats.verify_bits - sum(s.verify_bits for s in self.sessions)
            self._chip_counters = [{} for _ in self.sessions]

    def close(self) -> None:
        """Stop the instance threads and wait for them (after :meth:`join`, or to abandon
        the run: batches not yet checked are dropped); the sessions can be closed after."""
        self._abort = True
        if self._segment is not None:
            self._segment.items.put(None)
            self._segment = None
        for q in self._jobs:
            q.put(None)
        for t in self._threads:
            t.join()
