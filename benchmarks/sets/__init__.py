"""The benchmark sets, one module each: the cases it measures, each with its floor.

A set's module has ``run(bench, dataset)`` (``run(bench)`` for the cases without a dataset),
measures its cases with measure.alternate and keeps each with ``bench.record``. To add one:
the module here, its dataset (full and quick) in dataset.py, its name in harness.SETS, a
title for each new operation in report.OP_TITLES, and its targets, if any, in targets.py.
"""
