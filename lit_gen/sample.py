"""``python -m lit_gen.sample``: the entry point of ``lit_gen.commands.sample``, where the command lives.

Imported, this module *is* ``lit_gen.commands.sample`` (``from lit_gen.sample import main`` keeps working).
"""

import sys

from lit_gen.commands import sample as _command

if __name__ == "__main__":
    from lit_gen.cli import run_main

    run_main(_command.main)
else:
    sys.modules[__name__] = _command
