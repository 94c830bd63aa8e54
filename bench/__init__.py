"""mjflow's benchmarks: each one measures mjflow beside a baseline in the same run.

Run them all with ``make bench`` (``python -m bench.run_all``; ``--quick`` for a smoke
run). The figures and what limits them are in ``docs/benchmarks.md``.
"""
