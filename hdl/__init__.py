"""RTL generator layer (Amaranth): tiles, H-tree, WGUs, DFA feedback path (later issues)."""
