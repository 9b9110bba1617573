"""Training-step speed of each registered model against the machine's own peak, and what the speed-ups tried cost or pay.

1. The matrix-multiply peak: float32 GEMM GFLOP/s (2 n^3 per product) at 1 thread and at torch's default threads.
2. Each model's optimisation step at 32x32 and 64x64 (its reference batch size): images per second, GFLOP per
   step (``torch.utils.flop_counter``: convolutions, matrix products) and the step's GFLOP/s as a fraction of the
   peak at the same thread count.
3. ``--experiments``: each speed-up tried, A/B on the same model and batch: channels-last memory, ``torch.compile``
   of the encoder and decoder (inductor), thread counts, batched evaluation under ``torch.inference_mode`` against
   ``torch.no_grad``, and building batches from one float tensor against converting uint8 images per batch.
4. The reference backbones (ICM-VAE, CausalVAE and SCM-VAE MLPs at 96x96 RGBA, DEAR's ResNet-50 / SAGAN trio at
   64x64, iVAE's 3-layer xtanh MLPs at 64x64).

The models are every registered one (and any plugin installed).

Each step is a full optimisation step (forward, backward, optimiser; DEAR's three alternating updates) on random
images, timed after warm-up steps. Timings on a machine shared with other jobs are slower and noisier: run it on
an idle machine. Run: ``.venv/bin/python benchmarks/model_speed.py [--experiments] [--skip-reference]``.
``images_per_second`` also times a step on a GPU and under autocast (``benchmarks/gpu_check.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from crlbench.core import registry
from crlbench.training.precision import Precision
from crlbench.training.train import batch_tensors, build_model, optimisation_step

BATCH_SIZES = {"dear": 128}  # the reference batch sizes (configs/models/*.yaml); 64 for the others


@contextlib.contextmanager
def threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def matmul_peak(n: int = 2048, repeats: int = 8) -> float:
    """float32 GEMM GFLOP/s at the current thread count: the best of ``repeats`` n x n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def random_batch(card, batch_size: int, channels_last: bool = False) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    height, width, channels = card.image_shape
    images = torch.rand(batch_size, channels, height, width, generator=generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return {"images": images, "factors": torch.randn(batch_size, len(card.factors), generator=generator)}


def with_pairs(model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch plus a random second image per row ("images_after") for a model that trains on pairs (ILCM), and
    each row's environment ("environment") for a model that trains on environments (Contrastive CRL)."""
    if getattr(model, "needs_pairs", False) and "images_after" not in batch:
        generator = torch.Generator().manual_seed(1)
        images = batch["images"]
        after = torch.rand(images.shape, generator=generator).to(device=images.device, memory_format=(
            torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) and images.ndim == 4
            else torch.contiguous_format))
        batch = {**batch, "images_after": after}
    if getattr(model, "needs_environments", False) and "environment" not in batch:  # rows cycle through 0..K
        rows = len(batch["images"])
        batch = {**batch, "environment": (torch.arange(rows) % (len(model.card.factors) + 1)).to(batch["images"].device)}
    return batch


def step_flops(model, batch) -> float:
    """GFLOP of one optimisation step (forward, backward, update), counted by torch's flop counter."""
    batch = with_pairs(model, batch)
    optimizers = model.optimizers()
    with FlopCounterMode(display=False) as counter:
        optimisation_step(model, optimizers, batch, 0)
    return counter.get_total_flops() / 1e9


def seconds_per_step(model, batch, steps: int, warmup: int = 3, first_step: int = 0) -> float:
    """The median time of ``steps`` optimisation steps after ``warmup`` (every loss term active), numbered from
    ``first_step`` (a later stage of a model trained in stages)."""
    batch = with_pairs(model, batch)
    optimizers = model.optimizers()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        optimisation_step(model, optimizers, batch, first_step + step)
        times.append(time.perf_counter() - start)
    return float(np.median(times[warmup:]))


def prepared_model(name: str, card, channels_last: bool = False, compiled: bool = False, **hyperparameters):
    model = build_model(name, card, seed=0, **hyperparameters)
    model.on_train_start(10 ** 6, 100)
    model.on_epoch_start(94)  # every loss term active
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compiled:
        for child in ("encoder", "decoder"):
            if isinstance(getattr(model, child, None), torch.nn.Module):
                setattr(model, child, torch.compile(getattr(model, child)))
    return model


def against_peak(steps: int) -> None:
    """Each model's step at 32x32 and 64x64 against the GEMM peak, at 1 thread and the default threads."""
    default = torch.get_num_threads()
    for count in sorted({1, default}):
        with threads(count):
            peak = matmul_peak()
            print(f"{count} thread(s): float32 GEMM peak {peak:.0f} GFLOP/s")
            for size in (32, 64):
                card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used", size=size).card
                for name in registry.registry("model").names():
                    batch_size = BATCH_SIZES.get(name, 64)
                    batch = random_batch(card, batch_size)
                    flops = step_flops(prepared_model(name, card), batch)
                    seconds = seconds_per_step(prepared_model(name, card), batch, steps)
                    print(f"  {size}x{size} {name:<11} batch {batch_size:>3}: {batch_size / seconds:7.0f} images/s, "
                          f"{seconds * 1e3:6.1f} ms/step, {flops:5.2f} GFLOP/step = {flops / seconds:5.0f} GFLOP/s "
                          f"({flops / seconds / peak:4.0%} of peak)")


def experiments(steps: int) -> None:
    """Each speed-up tried, A/B at one thread (the suites' setting: one thread per cell) unless stated."""
    card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used", size=64).card
    with threads(1):
        print("channels-last memory and torch.compile (64x64, 1 thread): ms per step")
        for name in registry.registry("model").names():
            batch_size = BATCH_SIZES.get(name, 64)
            plain = seconds_per_step(prepared_model(name, card), random_batch(card, batch_size), steps)
            last = seconds_per_step(prepared_model(name, card, channels_last=True),
                                    random_batch(card, batch_size, channels_last=True), steps)
            line = f"  {name:<11} contiguous {plain * 1e3:6.1f}, channels-last {last * 1e3:6.1f} ({plain / last - 1:+.0%})"
            try:
                start = time.perf_counter()
                model = prepared_model(name, card, compiled=True)
                batch = random_batch(card, batch_size)
                batch = with_pairs(model, batch)
                optimisation_step(model, model.optimizers(), batch, 0)  # compiles
                compile_s = time.perf_counter() - start
                compiled = seconds_per_step(model, batch, steps)
                line += f", compiled {compiled * 1e3:6.1f} ({plain / compiled - 1:+.0%}; {compile_s:.0f} s to compile)"
            except Exception as error:  # noqa: BLE001 - inductor needs a C++ compiler; report, do not stop
                line += f", compile failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}"
            print(line, flush=True)
    print(f"threads (beta-VAE, 64x64): ms per step")
    model = prepared_model("beta_vae", card)
    batch = random_batch(card, 64)
    for count in sorted({1, 2, torch.get_num_threads()}):
        with threads(count):
            print(f"  {count} thread(s): {seconds_per_step(model, batch, steps) * 1e3:6.1f}")
    with threads(1):
        evaluation(card)
        batches(card)


def evaluation(card, images: int = 2000, batch_size: int = 256) -> None:
    """Encoding 2,000 images in batches of 256 (the runner's evaluation) under no_grad and inference_mode."""
    model = prepared_model("icm_vae", card).eval()
    x = torch.rand(images, card.image_shape[2], card.image_shape[0], card.image_shape[1])
    timings = {}
    for mode in (torch.no_grad, torch.inference_mode, torch.no_grad, torch.inference_mode):
        start = time.perf_counter()
        with mode():
            for i in range(0, images, batch_size):
                model.encode(x[i:i + batch_size])
        timings[mode.__name__] = time.perf_counter() - start  # the second of each pair: warm
    print(f"evaluation (ICM-VAE, {images} images at 64x64, 1 thread): no_grad {timings['no_grad']:.2f} s, "
          f"inference_mode {timings['inference_mode']:.2f} s")


def batches(card, rows: int = 5482, batch_size: int = 64) -> None:
    """An epoch's batches of Pendulum (5,482 uint8 images) converted per batch, or sliced from one float tensor."""
    height, width, channels = card.image_shape
    images = np.random.default_rng(0).integers(0, 256, (rows, height, width, channels), dtype=np.uint8)
    factors = np.random.default_rng(1).normal(size=(rows, len(card.factors)))
    mean, std = factors.mean(0), factors.std(0)
    order = np.random.default_rng(2).permutation(rows)
    start = time.perf_counter()
    for i in range(0, rows, batch_size):
        part = np.sort(order[i:i + batch_size])
        batch_tensors(images[part], factors[part], mean, std)
    per_batch = time.perf_counter() - start
    start = time.perf_counter()
    data = batch_tensors(images, factors, mean, std)
    for i in range(0, rows, batch_size):
        index = torch.from_numpy(np.sort(order[i:i + batch_size]))
        {key: value[index] for key, value in data.items()}
    once = time.perf_counter() - start
    print(f"batches of one epoch (64x64, {rows} images): converted per batch {per_batch:.2f} s, "
          f"from one float tensor {once:.2f} s (including the conversion)")


def images_per_second(name: str, card, batch_size: int, steps: int, warmup: int = 3, *, device: str = "cpu",
                      precision: str = "fp32", **hyperparameters) -> float:
    """Images per second of full training steps of ``name`` on ``device`` at ``precision`` (fp32, bf16, fp16)."""
    model = build_model(name, card, seed=0, **hyperparameters).to(device)
    model.on_epoch_start(94)  # every loss term active
    optimizers = model.optimizers()
    mixed = Precision(precision, device, model)
    generator = torch.Generator().manual_seed(0)
    height, width, channels = card.image_shape
    batch = {"images": torch.rand(batch_size, channels, height, width, generator=generator).to(device),
             "factors": torch.randn(batch_size, len(card.factors), generator=generator).to(device)}
    batch = with_pairs(model, batch)
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        optimisation_step(model, optimizers, batch, step, mixed)
    synchronize(device)  # a GPU runs the steps asynchronously: time them to their end
    return steps * batch_size / (time.perf_counter() - start)


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--experiments", action="store_true", help="A/B each speed-up tried")
    parser.add_argument("--skip-reference", action="store_true", help="skip the reference backbones (slow)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, {platform.processor() or ''}")
    against_peak(args.steps)
    if args.experiments:
        experiments(args.steps)
    card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used").card
    speeds = {}
    for name in registry.registry("model").names():
        speeds[name] = images_per_second(name, card, args.batch_size, args.steps)
        print(f"  {name:<12} {speeds[name]:7.1f} images/s  ({args.batch_size / speeds[name] * 1e3:6.1f} ms per step)")
    if {"icm_vae", "beta_vae"} <= set(speeds):
        print(f"ICM-VAE step / beta-VAE step on the same backbone: {speeds['beta_vae'] / speeds['icm_vae']:.2f}x (goal <= 1.5x)")
    if "ilcm" in speeds:  # the speeds above are its stage 1 (the conv reducer); stage 2 trains the MLP ILCM on 8-d features
        model = prepared_model("ilcm", card)
        seconds = seconds_per_step(model, random_batch(card, args.batch_size), args.steps,
                                   first_step=model.stage_probe_steps()[1])
        print(f"  ilcm stage 2 (ILCM on the reduced features): {args.batch_size / seconds:7.1f} images/s "
              f"({seconds * 1e3:6.1f} ms per step)")
    per_concept = images_per_second("icm_vae", card, args.batch_size, args.steps, decoder="per_concept")
    print(f"  icm_vae with per-concept conv decoders: {per_concept:7.1f} images/s")
    if args.skip_reference:
        return
    reference_backbone()
    reference_backbone("causal_vae")
    reference_backbone("scm_vae")
    reference_dear()
    reference_ivae()


def reference_backbone(name: str = "icm_vae", steps: int = 5, batch_size: int = 64) -> None:
    """ICM-VAE, CausalVAE or SCM-VAE with the reference MLP backbone on 96x96 RGBA, against the CausalVAE reference
    code's 2.6 s per batch of 64 measured on a 2-core CPU (docs/models.md, "Cost of the reference networks")."""
    card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used", size=96).card
    speed = images_per_second(name, card, batch_size, steps, warmup=2, backbone="reference")
    model = build_model(name, card, seed=0, backbone="reference")
    parameters = sum(p.numel() for p in model.parameters())
    seconds = batch_size / speed
    print(f"  {name}, reference backbone, 96x96 RGBA ({parameters / 1e6:.1f} M parameters): {seconds:.2f} s per "
          f"batch of {batch_size} = {2.6 / seconds:.2f}x faster than the reference code's 2.6 s (goal >= 1.5x)")


def reference_dear(steps: int = 3, batch_size: int = 64) -> None:
    """DEAR with the reference networks (ResNet-50 encoder, SAGAN generator, SAGAN joint D) at 64x64; the
    reference trains at batch 128 (xwshen51/DEAR config.py), so an iteration there costs about twice this step."""
    card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used", size=64).card
    speed = images_per_second("dear", card, batch_size, steps, warmup=1, networks="reference")
    model = build_model("dear", card, seed=0, networks="reference")
    parameters = sum(p.numel() for p in model.parameters())
    seconds = batch_size / speed
    print(f"  dear, reference networks, 64x64 ({parameters / 1e6:.1f} M parameters): {seconds:.2f} s per batch of "
          f"{batch_size} ({seconds * 5500 / batch_size / 60:.1f} min per epoch of 5.5k images)")


def reference_ivae(steps: int = 5, batch_size: int = 64) -> None:
    """iVAE with the reference code's MLPs (ilkhem/iVAE models/nets.py cleanIVAE: g, logv, f of 3 layers x 100
    xtanh units) on the flattened 64x64 RGB image."""
    card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used", size=64).card
    speed = images_per_second("ivae", card, batch_size, steps, warmup=2, backbone="reference")
    model = build_model("ivae", card, seed=0, backbone="reference")
    parameters = sum(p.numel() for p in model.parameters())
    print(f"  ivae, reference MLPs, 64x64 ({parameters / 1e6:.1f} M parameters): {speed:7.1f} images/s "
          f"({batch_size / speed * 1e3:6.1f} ms per step)")


if __name__ == "__main__":
    main()
