"""``python -m lit_gen.compare``: the entry point of ``lit_gen.commands.compare``, where the command lives.

Imported, this module *is* ``lit_gen.commands.compare`` (``from lit_gen.compare import main`` keeps working).
"""

import sys

from lit_gen.commands import compare as _command

if __name__ == "__main__":
    from lit_gen.cli import run_main

    run_main(_command.main)
else:
    sys.modules[__name__] = _command
