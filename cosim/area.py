"""The co-simulation's area synthesis: started beside training, joined for the summary.

This module owns when and where the chip's digital blocks are synthesized for the area
breakdown (:func:`insitu.hdl.asic_area.synthesize_area`): in a background thread (yosys runs
as child processes at nice 10, so training keeps its cores and its speed), cached under
``$INSITU_CACHE/area`` by the hash of the Verilog, and skipped with the reason in the summary
when yosys is missing or fails.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..hdl.asic_area import AsicArea, synthesize_area
from ..hdl.export import SUBARRAY, TOP, to_verilog
from ..hdl.params import ChipParams
from ..hdl.toolchain import ToolError, have_tool
from .verilator_model import default_cache

__all__ = ["area_cache", "finish_synthesis", "start_synthesis"]


def area_cache() -> Path:
    """``$INSITU_CACHE/area`` or ``~/.cache/insitu/area`` (beside the Verilator builds)."""
    return default_cache().parent / "area"


def start_synthesis(
    p: ChipParams, verilog: str | None, on_status: Callable[[str], object] | None = None
) -> Future[AsicArea] | str:
    """Start synthesizing the chip (``verilog``, or generated when None) in the background.

    Returns the future, or the reason there is none (yosys not installed)."""
    if not have_tool("yosys"):
        return "not run: yosys is not installed (make setup installs it); cited unit areas used"
    text = verilog if verilog is not None else to_verilog(p)[1]
    if on_status:
        on_status("synthesizing the digital blocks for the area breakdown (yosys, background)")
    pool = ThreadPoolExecutor(1, thread_name_prefix="insitu-area")
    future = pool.submit(
        synthesize_area, text, TOP, standins=[SUBARRAY], cache=area_cache(), nice=10
    )
    pool.shutdown(wait=False)
    return future


def finish_synthesis(
    started: Future[AsicArea] | str | None,
) -> tuple[AsicArea | None, str | None]:
    """The synthesized area, or None and why not."""
    if started is None:
        return None, None
    if isinstance(started, str):
        return None, started
    try:
        return started.result(), None
    except (ToolError, ValueError, OSError) as exc:  # a finished training run is kept
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, f"failed, cited unit areas used: {first}"
