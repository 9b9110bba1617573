"""A first check of crlbench on a GPU: step speed of every model, then the smoke suite on CUDA.

1. Each registered model's training-step speed on the GPU in images per second, at 32x32 and 64x64
   (batch 64, full optimisation steps on random images, as ``benchmarks/model_speed.py``, whose
   ``images_per_second`` it uses), in fp32 and under bf16 autocast (skipped where the GPU has no bf16).
2. Whether training is repeatable there: two fp32 runs of a few ICM-VAE steps from one seed, and the
   largest weight difference between them (GPU kernels need not add up in one order).
3. The smoke suite (``configs/suites/smoke.yaml``) with ``device: cuda``, once in fp32 and once in
   bf16, into a temporary work directory (datasets generated there once), with ``--workers`` local
   workers sharing the machine's GPUs; its wall time, each cell's status and the device it ran on.

Exit status: 0 when every cell is ok, 1 when one failed, 2 when torch sees no CUDA device.

Needs a CUDA build of torch in the environment: on a fresh GPU machine ``make TORCH=torch setup``
(PyPI's default Linux wheel carries CUDA), or a CUDA torch preinstalled into ``.venv`` before
``make setup`` (which then keeps it). Run from the repository root:
``.venv/bin/python benchmarks/gpu_check.py [--workers 2] [--keep DIR]``. ``--device cpu`` (with a
small ``--suite``) tries the script itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "suites" / "smoke.yaml"


def require_cuda() -> None:
    if torch.cuda.is_available():
        return
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    sys.stderr.write(f"gpu_check: torch {torch.__version__} ({build}) sees no CUDA device; nothing to check.\n"
                     "Run it on a machine with an NVIDIA GPU and a CUDA build of torch: `make TORCH=torch setup`, "
                     "or install a CUDA torch into .venv before `make setup`.\n")
    raise SystemExit(2)


def step_speeds(device: str, steps: int, batch_size: int, precisions: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from model_speed import images_per_second

    from crlbench.core import registry

    print(f"training steps on {device}, batch {batch_size}, {steps} timed steps after 3 warm-up steps (images/s):")
    print(f"  {'model':<12} {'size':>5} " + " ".join(f"{p:>9}" for p in precisions)
          + ("  bf16/fp32" if len(precisions) > 1 else ""))
    for size in (32, 64):
        card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used", size=size).card
        for name in registry.registry("model").names():
            speeds = [images_per_second(name, card, batch_size, steps, device=device, precision=p) for p in precisions]
            ratio = f"  {speeds[1] / speeds[0]:9.2f}x" if len(speeds) > 1 else ""
            print(f"  {name:<12} {size:>5} " + " ".join(f"{s:9.0f}" for s in speeds) + ratio, flush=True)


def repeatability(device: str, steps: int = 20) -> None:
    from crlbench.core import registry
    from crlbench.training.train import Budget, build_model, train

    card = registry.dataset("pendulum", cache_dir="/nonexistent-not-used", size=32).card
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 32, 32, 3), dtype=torch.uint8, generator=generator).numpy()
    factors = torch.randn(256, len(card.factors), generator=generator).double().numpy()
    weights = []
    for _ in range(2):
        model = build_model("icm_vae", card, seed=0).to(device)
        train(model, images, factors, budget=Budget(steps=steps, batch_size=64), seed=0, progress=False, device=device)
        weights.append([p.detach().cpu() for p in model.parameters()])
    difference = max(float((a - b).abs().max()) for a, b in zip(*weights))
    print(f"two fp32 runs of {steps} ICM-VAE steps from one seed on {device}: largest weight difference {difference:.3g}"
          + (" (identical)" if difference == 0 else ""))


def smoke(suite: Path, device: str, workdir: Path, workers: int, precision: str) -> bool:
    """``suite`` on ``device`` at ``precision`` in ``workdir``; whether every cell is ok."""
    from crlbench.core.config import read_yaml
    from crlbench.suites.suite import run_suite
    from crlbench.suites.suite_config import suite_from_dict

    data = {**read_yaml(suite), "device": device, "precision": precision}
    config = suite_from_dict(data, where=f"{suite} (device {device}, precision {precision})", base=suite.parent)
    start = time.perf_counter()
    summary = run_suite(config, workdir, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    records = sorted(summary.records, key=lambda r: (r["cell"]["dataset"], r["cell"]["model"], r["cell"]["seed"]))
    devices = sorted({str(r.get("device")) for r in records})
    print(f"suite {config.name}, device {device}, {precision}, {workers} worker(s): {len(records)} cells in {seconds:.1f} s; "
          f"{summary.ok} ran, {summary.cached} already done, {summary.failed} failed; trained on {', '.join(devices)}")
    for record in records:
        cell = record["cell"]
        train_s = (record.get("timings") or {}).get("train_s")
        timing = f"train {train_s:5.1f} s" if isinstance(train_s, (int, float)) else ""
        error = record.get("error") or {}
        detail = f"{error.get('type')}: {error.get('message')}" if record["status"] != "ok" else timing
        partial = " (partial: a metric failed)" if record.get("partial") else ""
        print(f"  {record['status']:<6} {cell['dataset']}/{cell['label']}/seed{cell['seed']} on {record.get('device')}"
              f"  {detail}{partial}")
    return summary.failed == 0 and all(r["status"] == "ok" and not r.get("partial") for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="local workers for the smoke suite (default: 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per speed (default: 20)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--keep", type=Path, help="run the smoke suite in this work directory and keep it")
    parser.add_argument("--skip-speed", action="store_true", help="only the suite")
    parser.add_argument("--suite", type=Path, default=SMOKE, help="the suite to run (default: the smoke suite)")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu tries this script without a GPU")
    args = parser.parse_args()
    if args.device == "cuda":
        require_cuda()
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
              f"{platform.machine()}; {len(names)} GPU(s): {', '.join(names)}")
    precisions = ["fp32", "bf16"] if args.device != "cuda" or torch.cuda.is_bf16_supported() else ["fp32"]
    if "bf16" not in precisions:
        print("this GPU has no bf16: bf16 is skipped")
    if not args.skip_speed:
        step_speeds(args.device, args.steps, args.batch_size, precisions)
        repeatability(args.device)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="crlbench-gpu-check-"))
    ok = True
    try:
        for precision in precisions:
            ok = smoke(args.suite.resolve(), args.device, workdir, args.workers, precision) and ok
    finally:
        if args.keep is None and ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}")
    print("every cell is ok" if ok else "some cells failed (see above)")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
