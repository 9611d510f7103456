"""Comparing runs: collect what runs left, measure what they lack, tabulate, plot and render."""
