"""``crlbench list`` (the registered models, datasets and metrics, a plugin's too) and ``crlbench data``
(a dataset generated or its cache verified, a PNG of samples and intervention strips, its card as YAML).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

from crlbench.cli.common import key_values
from crlbench.core import registry
from crlbench.core.config import DatasetConfig, load_dataset_config
from crlbench.core.errors import ConfigError

KIND_CHOICES = {"models": "model", "datasets": "dataset", "metrics": "metric"}
MAX_COUNT = 64  # images per row of a preview


def add_list_command(commands: Any) -> None:
    """``crlbench list``."""
    listing = commands.add_parser("list", help="list registered models, datasets and metrics")
    listing.add_argument("kind", nargs="?", choices=sorted(KIND_CHOICES), help="one kind only")
    listing.add_argument("--plugins", dest="plugins", action="append", default=[], metavar="MODULE",
                         help="import a plugin module first, as a suite's 'plugins:' does, so its models, "
                              "datasets and metrics are listed (repeatable; installed or on PYTHONPATH)")
    listing.set_defaults(handler=run_list)


def add_data_commands(commands: Any) -> None:
    """``crlbench data generate|show|card``."""
    data = commands.add_parser("data", help="generate, inspect and preview datasets")
    data_commands = data.add_subparsers(title="data commands", required=True)
    for name, handler, text in (
        ("generate", run_generate, "generate (or verify the cache of) a dataset"),
        ("show", run_show, "write a PNG of samples and ground-truth intervention strips"),
        ("card", run_card, "print a dataset's card as YAML"),
    ):
        command = data_commands.add_parser(name, help=text)
        _dataset_arguments(command)
        command.set_defaults(handler=handler)
        if name == "show":
            command.add_argument("--out", required=True, type=Path, help="PNG file to write")
            command.add_argument("--split", default="train", help="split to sample (default: train)")
            command.add_argument("--count", type=int, default=8, help="images per row (default: 8)")


def _dataset_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("dataset", help="a registered dataset name, or a dataset config YAML file")
    command.add_argument("--size", type=int, help="image side in pixels (default: 64)")
    command.add_argument("--seed", type=int, help="dataset seed (default: 0)")
    command.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="any other dataset parameter, e.g. --set split_rule=random (repeatable)",
    )
    command.add_argument("--workdir", type=Path,
                         help="work directory; data is cached in WORKDIR/data (default: $CRLBENCH_WORKDIR or runs)")


def run_list(args: argparse.Namespace) -> int:
    registry.load_plugins(args.plugins, source="--plugins")
    kinds = [KIND_CHOICES[args.kind]] if args.kind else list(KIND_CHOICES.values())
    for kind in kinds:
        entries = registry.registry(kind).entries()
        print(f"{kind}s:")
        if not entries:
            print("  (none registered)")
        for entry in entries:
            print(f"  {entry.name:<20} {entry.target}  [{entry.provider}]")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    dataset = _build_dataset(args)
    start = time.perf_counter()
    sizes = {name: len(dataset.split(name)) for name in dataset.split_names}
    seconds = time.perf_counter() - start
    verb = "loaded from cache" if dataset.loaded_from_cache else "generated"
    print(f"{dataset.name} v{dataset.version}: {verb} in {seconds:.1f} s -> {dataset.cache_path()}")
    print("  splits: " + ", ".join(f"{name} {size}" for name, size in sizes.items()))
    print("  factors: " + ", ".join(dataset.card.factor_names))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from PIL import Image

    from crlbench.reports.preview import dataset_preview

    if not 0 < args.count <= MAX_COUNT:
        raise ConfigError(f"--count must be an integer from 1 to {MAX_COUNT}; got {args.count}")
    formats = Image.registered_extensions()
    if args.out.suffix.lower() not in formats:
        raise ConfigError(f"--out {args.out}: unknown image format; use a file name ending in .png (or {', '.join(sorted(formats)[:8])}, ...)")
    dataset = _build_dataset(args)
    image = dataset_preview(dataset, split=args.split, count=args.count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height})")
    return 0


def run_card(args: argparse.Namespace) -> int:
    card = _build_dataset(args).card.to_dict()
    print(yaml.safe_dump(json.loads(json.dumps(card)), sort_keys=False, width=100))
    return 0


def _build_dataset(args: argparse.Namespace) -> Any:
    if args.dataset.endswith((".yaml", ".yml")):
        config = load_dataset_config(args.dataset)
    else:
        config = DatasetConfig(args.dataset)
    overrides = {key: value for key, value in (("size", args.size), ("seed", args.seed)) if value is not None}
    overrides.update(key_values(args.overrides, "--set"))
    cache_dir = None if args.workdir is None else args.workdir / "data"  # None: the dataset's default
    return config.build(cache_dir=cache_dir, **overrides)
