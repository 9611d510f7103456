"""lit_gen's benchmarks: each module measures one claim and writes ``bench/results/<name>.json``.

Run them all with ``make bench`` (``python -m bench.run_all``) or one with ``python -m bench.<name>``;
``bench/README.md`` describes each and holds the table of the latest results.
"""
