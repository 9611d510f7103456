"""Quantizers of the VQ families, one interface (``base.Quantizer``), chosen by ``model.quantizer``:
``vq`` (a learned codebook, optionally with the rotation trick), ``fsq`` (finite scalar quantization) and
``lfq`` (lookup-free quantization)."""

from lit_gen.nn.quantizers.base import CodeUsage, Quantized, Quantizer, perplexity_of
from lit_gen.nn.quantizers.fsq import FiniteScalarQuantizer
from lit_gen.nn.quantizers.lfq import LookupFreeQuantizer
from lit_gen.nn.quantizers.vq import VectorQuantizer

__all__ = ["CodeUsage", "FiniteScalarQuantizer", "LookupFreeQuantizer", "Quantized", "Quantizer",
           "VectorQuantizer", "perplexity_of"]
