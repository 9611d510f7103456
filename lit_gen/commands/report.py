"""``python -m lit_gen.report RUN_DIR``: write (or refresh) the run's ``report.md`` (``lit_gen.comparing.run_report``)."""

from __future__ import annotations

from lit_gen.comparing.run_report import describe_parameters, write_report  # noqa: F401 (the command's library)


def main(argv: list[str]) -> int:
    from lit_gen.cli import setup_logging

    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m lit_gen.report RUN_DIR   (a runs/<name>/<id> folder)")
        return 2
    setup_logging()
    print(f"report     {write_report(argv[0])}")
    return 0
