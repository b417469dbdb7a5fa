"""graphc's math helpers, compiled once per installation (graphc/codegen/mathlib.py)."""
