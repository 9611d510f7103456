"""A test's way into the samplers: a bare noise schedule stands for the vp objective over it.

Many sampler tests build a schedule by hand (custom betas, a respaced one); ``sample_loop`` wraps it in
``VPObjective.from_schedule`` with the given prediction and calls ``lit_gen.diffusion.samplers.sample``.
"""

from __future__ import annotations

from lit_gen.diffusion.objectives import Objective, VPObjective
from lit_gen.diffusion.samplers import sample
from lit_gen.diffusion.schedule import NoiseSchedule


def sample_loop(model_fn, schedule_or_objective, shape, *, prediction: str = "eps", **options):
    """``sample(model_fn, objective, shape, **options)`` with a schedule taken as the vp objective over it."""
    if isinstance(schedule_or_objective, NoiseSchedule):
        objective: Objective = VPObjective.from_schedule(schedule_or_objective, prediction)
    else:
        assert prediction == "eps", "an objective knows its own prediction"
        objective = schedule_or_objective
    return sample(model_fn, objective, shape, **options)
