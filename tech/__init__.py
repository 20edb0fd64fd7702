"""Technology data: nodes and device presets, each number with its published source."""
