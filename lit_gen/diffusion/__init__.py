"""Diffusion math: noise schedules, the reverse-process sampler and classifier-free guidance.

Nothing here holds a network; samplers reach one only through ``model_fn(x_t, t) -> prediction``.
"""

from lit_gen.diffusion.guidance import guided
from lit_gen.diffusion.samplers import sample_loop
from lit_gen.diffusion.schedule import NoiseSchedule

__all__ = ["NoiseSchedule", "guided", "sample_loop"]
