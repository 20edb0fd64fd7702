"""Instantiate a component as a separately generated Verilog module.

Amaranth elaborates every instance of a component on its own; a chip holds hundreds of
identical subarrays, so the export generates the subarray once and the top instantiates it by
name (generation of an MNIST-size chip: seconds instead of many minutes). :class:`Blackbox`
keeps the component's ports, so the chip's code is the same for both forms; the Amaranth
simulator uses the elaborated form (it cannot simulate an ``Instance``).
"""

from __future__ import annotations

from typing import Any

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In


class Blackbox(wiring.Component):
    """A component with ``template``'s ports that elaborates into ``Instance(module_name)``."""

    def __init__(self, template: wiring.Component, module_name: str) -> None:
        self.module_name = module_name
        super().__init__(wiring.Signature(dict(template.signature.members.items())))
        # derived integer parameters (widths) stay readable on the stand-in
        for key, value in vars(template).items():
            if not key.startswith("_") and isinstance(value, int):
                setattr(self, key, value)
        template._MustUse__silence = True  # only its ports are used

    def elaborate(self, platform: object) -> Module:
        m = Module()
        ports: dict[str, Any] = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for path, member, value in self.signature.flatten(self):
            name = "__".join(str(x) for x in path)
            ports[("i_" if member.flow == In else "o_") + name] = value
        m.submodules.inst = Instance(self.module_name, **ports)
        return m
