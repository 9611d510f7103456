"""bench.sampling writes causes from its own measurements only: no number of an earlier run."""

import re

from bench.sampling import explain_fid


def test_the_cause_of_a_miss_holds_only_numbers_this_run_measured():
    results = {"ddpm1000": {"fid": 4.25}, "ddim50": {"fid": 6.5, "fid_ratio_vs_ddpm1000": 1.529},
               "ddim100": {"fid": 5.0, "fid_ratio_vs_ddpm1000": 1.176}}
    cause = explain_fid(results, floor=3.5, num_samples=120)
    measured = {"4.25", "6.50", "5.00", "1.18", "3.50", "120", "50", "100", "1000"}
    numbers = set(re.findall(r"\d+(?:\.\d+)?", cause))
    assert numbers <= measured, numbers - measured
    # ... and it gives them: both FIDs of the miss, the real-data floor, the sample count and DDIM-100's FID
    # and ratio (an empty or number-free cause would pass the line above).
    assert {"6.50", "4.25", "3.50", "120", "5.00", "1.18"} <= numbers, cause
    assert "ddim200" not in cause and "sampling_200ep" not in cause
