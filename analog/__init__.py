"""Analog characterization layer (PySpice + ngspice): column and ADC sweeps into LUTs."""
