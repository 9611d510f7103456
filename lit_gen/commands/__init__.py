"""The command-line programs, one module each: ``python -m lit_gen.<command>`` runs ``lit_gen.commands.<command>``.

fit (train, resume), sample (grids, tensors, interpolation), evaluate (FID and its yardstick, bits/dim),
compare (runs side by side), sweep (W&B sweep files, offline), slurm (render and submit jobs), report (a
run's report.md). Each parses its arguments, turns user errors into one line and exit code 2
(``lit_gen.cli.run_main``), and calls the library below it; nothing in the library imports a command.
"""
