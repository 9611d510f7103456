"""The reset around every test (``tests/conftest.py``): what a test leaks goes, what the runner sets stays."""

from __future__ import annotations

import os

from tests.conftest import _reset_global_state


def test_the_reset_removes_a_leaked_variable_and_keeps_the_runners_own():
    before = os.environ.get("MUTANT_UNDER_TEST")
    try:
        # mutmut activates a mutant through this variable after the suite is imported: dropping it would test
        # the unmutated code and let every mutant survive.
        os.environ["MUTANT_UNDER_TEST"] = "lit_gen.x.f__mutmut_1"
        os.environ["LIT_GEN_LEAKED_BY_A_TEST"] = "1"
        _reset_global_state(seed_python=False)
        assert os.environ.get("MUTANT_UNDER_TEST") == "lit_gen.x.f__mutmut_1"
        assert "LIT_GEN_LEAKED_BY_A_TEST" not in os.environ
    finally:
        os.environ.pop("LIT_GEN_LEAKED_BY_A_TEST", None)
        if before is None:
            os.environ.pop("MUTANT_UNDER_TEST", None)
        else:
            os.environ["MUTANT_UNDER_TEST"] = before
