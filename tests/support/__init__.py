"""Helpers shared by the test modules: independent oracles, bit comparisons,
paths, machine-code readers, the mutant implementations and child scripts."""
