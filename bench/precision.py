"""Training speed and memory of the CIFAR-10 U-Net (ddpm_cifar.yaml) under fp32, bf16-mixed, channels_last and torch.compile.

    python -m bench.precision                 # CPU: batch 8; CUDA: batch 128
    python -m bench.precision --quick         # CPU: batch 4, fewer rounds
    python -m bench.precision --batch-size 64 --variants fp32 bf16-mixed

One model per variant (the 35.7M-parameter DDPM of configs/ddpm_cifar.yaml, same initial weights)
trains on the same random batch: DDPM loss, backward, gradient clipping at 1, AdamW, EMA update,
as ``lit_gen.fit`` does. After warm-up steps (the compiled variant's first step holds its compile
time, reported apart), the variants take one step each in turn (A B C D, D C B A, ...) and their
images/s are medians over rounds. ``bf16-mixed`` is ``torch.autocast(bfloat16)`` around the loss, what
Lightning's ``trainer.precision=bf16-mixed`` does; ``channels_last`` converts the model and batch
(fp32); ``compile`` is ``torch.compile`` of the U-Net (fp32).

Memory: on CUDA ``torch.cuda.max_memory_allocated`` during a step; on a CPU the peak resident
memory of this process during a step above its resident memory before it (Linux: the high-water
mark is reset between measurements), i.e. activations and gradients. On CUDA the record also
gives the device name and the model FLOPs utilisation: training FLOPs per image (forward and
backward, counted with ``torch.utils.flop_counter.FlopCounterMode``) x images/s, divided by the
GPU's dense bf16 peak.
"""

from __future__ import annotations

import time

import torch

from bench.common import (REPO, Recorder, base_parser, cuda_device_name, gpu_skip_reason, median, mib, peak_bf16_tflops,
                          peak_rss_delta, setup, sync)
from lit_gen.models.parameters import count_parameters

VARIANTS = ("fp32", "bf16-mixed", "channels_last", "compile")


def model_kwargs() -> dict:
    from lit_gen.config import load_config

    return load_config(REPO / "configs" / "ddpm_cifar.yaml").model_kwargs()


class Variant:
    """One model, optimizer and batch trained under one precision/layout/compile option."""

    def __init__(self, name: str, kwargs: dict, batch_size: int, device: torch.device, seed: int = 0) -> None:
        from lit_gen.models.diffusion import Diffusion

        self.name = name
        self.device = device
        torch.manual_seed(seed)
        self.model = Diffusion(**kwargs).to(device).train()
        generator = torch.Generator().manual_seed(seed)
        images = (torch.rand(batch_size, kwargs["channels"], kwargs["image_size"], kwargs["image_size"], generator=generator)
                  * 2 - 1).to(device)
        if name == "channels_last":
            self.model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        if name == "compile":
            self.model.unet.compile()
        self.batch = (images, torch.zeros(batch_size, dtype=torch.long, device=device))
        self.params = list(self.model.trainable_parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=self.model.lr)
        self.autocast = name == "bf16-mixed"

    def step(self) -> float:
        started = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.model.loss(self.batch).total
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.model.update_ema()
        sync(self.device)
        return time.perf_counter() - started

    def measured_step(self) -> dict:
        """One step's seconds and peak memory (bytes above the start on a CPU, allocated bytes on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            seconds = self.step()
            return {"seconds": seconds, "peak_bytes": torch.cuda.max_memory_allocated(self.device)}
        with peak_rss_delta() as memory:
            seconds = self.step()
        return {"seconds": seconds, "peak_bytes": memory["delta_bytes"]}


def training_flops_per_image(kwargs: dict, device: torch.device, batch: int = 2) -> int:
    """Forward + backward FLOPs of one training step per image (FlopCounterMode counts matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    variant = Variant("fp32", kwargs, batch, device)
    with FlopCounterMode(display=False) as counter:
        loss = variant.model.loss(variant.batch).total
        loss.backward()
    flops = counter.get_total_flops() // batch
    del variant
    return flops


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=None, help="CPU: 8 (quick 4); CUDA: 128")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, quick 3)")
    parser.add_argument("--variants", nargs="+", default=None, choices=VARIANTS,
                        help="default: all four (quick on a CPU: without compile, whose compilation takes minutes there)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU (default 1)")
    args = parser.parse_args(argv)
    setup()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch_size or (128 if device.type == "cuda" else (4 if args.quick else 8))
    rounds = args.rounds or (3 if args.quick else 5)
    kwargs = model_kwargs()
    skip_compile = args.variants is None and args.quick and device.type == "cpu"
    args.variants = args.variants or [v for v in VARIANTS if not (skip_compile and v == "compile")]
    rec = Recorder("precision", f"ddpm_cifar U-Net training: {', '.join(args.variants)} on {device.type}")
    if skip_compile:
        rec.notes.append("--quick on a CPU leaves out torch.compile: compiling this U-Net took about 6 minutes on 2 loaded "
                         "cores; python -m bench.precision includes it.")
    flops = training_flops_per_image(kwargs, device)
    variants, compile_seconds, errors = {}, {}, {}
    for name in args.variants:
        try:
            variant = Variant(name, kwargs, batch, device)
            first = variant.step()  # warm-up; for compile, the compilation
            second = variant.step()
            if name == "compile":
                compile_seconds[name] = round(first - second, 1)
            variants[name] = variant
        except Exception as exc:  # e.g. no C++ compiler for inductor: record it and go on with the others
            errors[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
    samples = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else reversed(names)):
            samples[name].append(variants[name].measured_step())

    device_name = cuda_device_name()
    peak = peak_bf16_tflops(device_name)
    results = {}
    for name, runs in samples.items():
        seconds = median([s["seconds"] for s in runs])
        images_per_s = batch / seconds
        peaks = [s["peak_bytes"] for s in runs if s["peak_bytes"] is not None]
        results[name] = {
            "images_per_s": round(images_per_s, 3),
            "step_seconds": round(seconds, 3),
            "speedup_vs_fp32": None,
            "peak_memory_mib": mib(max(peaks)) if peaks else None,
            "achieved_tflops": round(flops * images_per_s / 1e12, 4),
            "mfu_vs_bf16_peak": round(flops * images_per_s / (peak * 1e12), 4) if peak else None,
            "all_step_seconds": [round(s["seconds"], 3) for s in runs],
        }
    if "fp32" in results:
        for name, r in results.items():
            r["speedup_vs_fp32"] = round(r["images_per_s"] / results["fp32"]["images_per_s"], 3)
    rec.numbers.update(device=str(device), device_name=device_name or "cpu", batch_size=batch, rounds=rounds,
                       parameter_counts=(count_parameters(next(iter(variants.values())).model).as_dict() if variants else None),
                       training_gflops_per_image=round(flops / 1e9, 2), peak_bf16_tflops=peak,
                       memory_measure=("torch.cuda.max_memory_allocated" if device.type == "cuda" else
                                       "peak RSS during the step above RSS before it (activations + gradients)"),
                       results=results, compile_seconds=compile_seconds, errors=errors,
                       torch_threads=torch.get_num_threads() if device.type == "cpu" else None)
    for name, r in results.items():
        rec.headline[name] = (f"{r['images_per_s']:.2f} img/s" + (f" ({r['speedup_vs_fp32']:.2f}x fp32)" if r["speedup_vs_fp32"] else "")
                              + (f", peak {r['peak_memory_mib']:.0f} MiB" if r["peak_memory_mib"] is not None else "")
                              + (f", MFU {100 * r['mfu_vs_bf16_peak']:.1f}%" if r["mfu_vs_bf16_peak"] is not None else ""))
    for name, error in errors.items():
        rec.headline[name] = f"failed: {error[:80]}"
    rec.headline["training GFLOPs per image"] = f"{flops / 1e9:.1f}"
    if device.type == "cpu":
        rec.headline["GPU (batch 128, MFU)"] = gpu_skip_reason()
        rec.notes.append(f"CPU run at batch {batch} with {torch.get_num_threads()} thread(s): the 35.7M U-Net needs seconds "
                         "per image on a CPU. Rerun on a GPU for the batch-128 numbers, device name and MFU.")
    if device.type == "cuda":
        rec.notes.append(f"CUDA defaults kept: cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} (fp32 convolutions use TF32), "
                         f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}; MFU is against the dense bf16 peak.")
    if compile_seconds:
        rec.notes.append(f"torch.compile: first step took {compile_seconds} s longer (compilation), excluded from images/s.")
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
