"""The GPU numbers of configs/ddpm_cifar.yaml in one short run: training images/s, peak memory, MFU, DDIM-50 sampling.

    bench/gpu.sh                      # the same, with a hard 8-minute limit
    python -m bench.gpu [--out FILE]  # prints one JSON record; writes bench/results/gpu.json on a GPU

Training, at batch 128 (the config's), on the same random batch, DDPM loss + backward + clipping
+ AdamW + EMA as ``lit_gen.fit`` does, three variants that step in turn (A B C, C B A, ...):
``fp32`` (CUDA defaults: TF32 convolutions), ``bf16-mixed`` (``torch.autocast(bfloat16)``, what
``trainer.precision=bf16-mixed`` does) and ``bf16-mixed+compile`` (the same with the U-Net under
``torch.compile``; its compile time is reported apart). Images/s: median over rounds; peak memory:
what the variant keeps between steps plus what ``torch.cuda.max_memory_allocated`` shows a step
adding above everything resident (the three models stay allocated together; the absolute peak is
recorded too); model FLOPs utilisation: training FLOPs per
image counted with ``torch.utils.flop_counter.FlopCounterMode`` x images/s / the GPU's dense bf16
peak (``bench.common.PEAK_BF16_TFLOPS``; None for an unknown GPU). Sampling: DDIM-50 (EMA weights)
images/s at batch 256, fp32 and bf16 autocast, median of 3.

Without a CUDA device it prints a record that says so and exits 0, writing no file.
A deadline (default 420 s) stops the parts that have not started, and the record names them.
"""

from __future__ import annotations

import json
import time

import torch

from bench.common import (Recorder, base_parser, cuda_device_name, gpu_skip_reason, median, mib, peak_bf16_tflops, setup,
                          sync)

VARIANTS = ("fp32", "bf16-mixed", "bf16-mixed+compile")


def no_gpu_record() -> dict:
    return {"name": "gpu", "skipped": gpu_skip_reason(), "cuda": None}


def build_variant(name: str, kwargs: dict, batch: int, device: torch.device):
    from bench.precision import Variant

    variant = Variant("compile" if name.endswith("+compile") else "fp32", kwargs, batch, device)
    variant.autocast = name.startswith("bf16")
    variant.name = name
    return variant


def measured_step(variant, device: torch.device) -> dict:
    """One step's seconds, the allocated bytes before it and the peak allocated during it."""
    sync(device)
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    seconds = variant.step()
    return {"seconds": seconds, "resident_bytes": resident, "peak_bytes": torch.cuda.max_memory_allocated(device)}


@torch.no_grad()
def sampling_images_per_s(model, batch: int, autocast: bool, repeats: int = 3) -> float:
    device = next(model.parameters()).device
    times = []
    for r in range(repeats + 1):  # the first call warms up kernels
        generator = torch.Generator().manual_seed(r)
        sync(device)
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            model.sample(batch, generator=generator, sampler="ddim", steps=50)
        sync(device)
        if r:
            times.append(time.perf_counter() - started)
    return batch / median(times)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (default 128, the config's)")
    parser.add_argument("--rounds", type=int, default=10, help="timed training rounds (default 10)")
    parser.add_argument("--sample-batch", type=int, default=256)
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds after which no new part starts")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU: " + gpu_skip_reason())
        print(json.dumps(no_gpu_record()))
        return 0
    setup()
    started = time.perf_counter()
    device = torch.device("cuda")
    from bench.precision import model_kwargs, training_flops_per_image

    kwargs = model_kwargs()
    rec = Recorder("gpu", f"ddpm_cifar on {cuda_device_name()}: training fp32 / bf16-mixed / +compile, DDIM-50 sampling")
    flops = training_flops_per_image(kwargs, device)
    peak = peak_bf16_tflops(cuda_device_name())
    variants, compile_seconds, skipped, own_state = {}, {}, [], {}
    for name in VARIANTS:
        if time.perf_counter() - started > args.deadline:
            skipped.append(name)
            continue
        allocated_before = torch.cuda.memory_allocated(device)
        variant = build_variant(name, kwargs, args.batch_size, device)
        first = variant.step()
        second = variant.step()
        sync(device)
        # What this variant keeps between steps (weights, EMA copy, optimizer states, its batch).
        own_state[name] = torch.cuda.memory_allocated(device) - allocated_before
        if name.endswith("+compile"):
            compile_seconds[name] = round(first - second, 1)
        variants[name] = variant
    samples = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        if time.perf_counter() - started > args.deadline and r >= 3:
            rec.notes.append(f"deadline reached: {r} training rounds instead of {args.rounds}")
            break
        for name in (names if r % 2 == 0 else reversed(names)):
            samples[name].append(measured_step(variants[name], device))
    training = {}
    for name, runs in samples.items():
        seconds = median([s["seconds"] for s in runs])
        images_per_s = args.batch_size / seconds
        training[name] = {"images_per_s": round(images_per_s, 1), "step_seconds": round(seconds, 4),
                          # All variants stay allocated at once: a variant's own peak is what it keeps between
                          # steps plus what a step allocates above everything resident.
                          "peak_memory_mib": mib(own_state[name] + max(s["peak_bytes"] - s["resident_bytes"] for s in runs)),
                          "peak_allocated_all_variants_mib": mib(max(s["peak_bytes"] for s in runs)),
                          "achieved_tflops": round(flops * images_per_s / 1e12, 2),
                          "mfu_vs_bf16_peak": round(flops * images_per_s / (peak * 1e12), 4) if peak else None,
                          "rounds": len(runs)}
    sampling = {}
    model = variants["fp32"].model.eval() if "fp32" in variants else None
    for label, autocast in (("fp32", False), ("bf16-mixed", True)):
        if model is None or time.perf_counter() - started > args.deadline:
            skipped.append(f"sampling {label}")
            continue
        sampling[label] = {"ddim50_images_per_s": round(sampling_images_per_s(model, args.sample_batch, autocast), 1),
                           "batch": args.sample_batch}
    rec.numbers.update(device_name=cuda_device_name(), batch_size=args.batch_size, training_gflops_per_image=round(flops / 1e9, 2),
                       peak_bf16_tflops=peak, training=training, compile_seconds=compile_seconds, sampling=sampling,
                       skipped=skipped, seconds_total=round(time.perf_counter() - started, 1))
    for name, r in training.items():
        mfu = f", MFU {100 * r['mfu_vs_bf16_peak']:.1f}%" if r["mfu_vs_bf16_peak"] is not None else ""
        rec.headline[f"train {name}"] = f"{r['images_per_s']:.0f} img/s, peak {r['peak_memory_mib']:.0f} MiB{mfu}"
    for name, r in sampling.items():
        rec.headline[f"DDIM-50 sampling {name}"] = f"{r['ddim50_images_per_s']:.0f} img/s (batch {r['batch']})"
    if skipped:
        rec.notes.append(f"not measured (deadline {args.deadline:.0f} s): {', '.join(skipped)}")
    path = rec.write(args.out)
    print(json.dumps(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
