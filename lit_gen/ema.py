"""``python -m lit_gen.ema``: the entry point of ``lit_gen.commands.ema``, where the command lives.

Imported, this module *is* ``lit_gen.commands.ema`` (``from lit_gen.ema import main`` keeps working).
"""

import sys

from lit_gen.commands import ema as _command

if __name__ == "__main__":
    from lit_gen.cli import run_main

    run_main(_command.main)
else:
    sys.modules[__name__] = _command
