"""Whole jobs composed from the stages, shared by the CLI, the panels and the benchmarks."""
