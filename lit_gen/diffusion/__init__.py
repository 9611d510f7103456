"""Diffusion math: noise schedules, the training objectives, the samplers and classifier-free guidance.

Nothing here holds a network; objectives and samplers reach one only through
``model_fn(x, time) -> output``.
"""

from lit_gen.diffusion.guidance import guided
from lit_gen.diffusion.samplers import SAMPLERS, sample
from lit_gen.diffusion.schedule import NoiseSchedule

__all__ = ["SAMPLERS", "NoiseSchedule", "guided", "sample"]
