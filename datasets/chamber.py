"""The Causal Chamber light tunnel's CRL benchmark ``lt_crl_benchmark_v1``, experiment family ``buchholz_1``.

Papers: Gamella, Peters, Buehlmann, "Causal chambers as a real-world physical testbed for AI methodology",
Nature Machine Intelligence 2025; Gamella, Bing, Runge, "Sanity Checking Causal Representation Learning on a
Simple Real-World System", ICML 2025. Data and generator: ``juangamella/causal-chamber``, folder
``datasets/lt_crl_benchmark_v1`` (README, ``variables.csv``, ``params_buchholz_1.py``,
``generators/buchholz_1.py``; data CC BY 4.0, code MIT).

The dataset ``chamber`` reads the published experiments; the factors, SCM and set-points it shares with its
simulated negative control (``chamber_f3``) are in :mod:`crlbench.datasets.light_tunnel`.

**Reading the published data** (dataset ``chamber``): ``<root>/lt_crl_benchmark_v1/<experiment>/
<experiment>.csv`` (one row per image; only ``red, green, blue, pol_1, pol_2, image_file`` are read) and
``<experiment>/images_64/<image_file>`` (JPEG camera images, decoded with PIL). ``causalchamber.datasets``
is not used: it looks dataset names up over the network.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.core.params import legacy_field, location_field, require
from crlbench.core.registry import register_dataset
from crlbench.datasets.base import Factor, SCMDataset
from crlbench.datasets.cache import content_key, file_sha256
from crlbench.datasets.light_tunnel import (ACTUATOR_HIGH, ACTUATOR_LOW, ADJACENCY, BENCHMARK, FACTOR_NAMES, IMAGE_COLUMN, IS_LED, PERMUTATION, PUBLISHED_ORDER, PUBLISHED_SIZE, Standardisation, abduce, choices_shared, experiment_names, factor_definitions, mechanism, split_counts)


# -- the reader of the published files -------------------------------------------------------------------

@dataclass(frozen=True)
class Experiment:
    """One experiment's rows: set-points [N, 5] in card order and the image files they name."""

    name: str
    folder: Path
    csv_path: Path
    factors: np.ndarray
    image_files: tuple[str, ...]
    lines: tuple[int, ...]  # the CSV line of each row, for messages
    csv_sha256: str


def read_experiment(benchmark: Path, name: str, owner: str) -> Experiment:
    """The factor columns and image file names of ``<benchmark>/<name>/<name>.csv``; other columns are ignored."""
    folder = benchmark / name
    csv_path = folder / f"{name}.csv"
    if not folder.is_dir():
        raise ConfigError(f"{owner}: experiment folder {folder} is missing; expected the {BENCHMARK} experiment "
                          f"{name!r} (with {name}.csv and images_64/) under parameter 'root'")
    if not csv_path.is_file():
        raise ConfigError(f"{owner}: {csv_path} is missing; expected the experiment's CSV, one row per image")
    wanted = (*PUBLISHED_ORDER, IMAGE_COLUMN)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        missing = [column for column in wanted if column not in header]
        if missing:
            raise ConfigError(f"{owner}: {csv_path}: column(s) {', '.join(map(repr, missing))} missing; expected "
                              f"the columns {', '.join(wanted)} (others are ignored)")
        indices = [header.index(column) for column in wanted]
        lines, rows = [], []
        for row in reader:
            if row:
                lines.append(reader.line_num)
                rows.append([row[i] if i < len(row) else "" for i in indices])
    if not rows:
        raise ConfigError(f"{owner}: {csv_path} has no rows")
    published = np.empty((len(rows), len(PUBLISHED_ORDER)))
    for column, factor in enumerate(PUBLISHED_ORDER):
        for r, row in enumerate(rows):
            try:
                published[r, column] = float(row[column])
            except ValueError:
                raise ConfigError(f"{owner}: {csv_path}, line {lines[r]}: column {factor!r} holds {row[column]!r}; "
                                  "expected a number") from None
    factors = published[:, list(PERMUTATION)]
    snapped = np.where(IS_LED, np.round(factors), np.round(factors * 10.0) / 10.0 + 0.0)
    for k, factor in enumerate(FACTOR_NAMES):
        values = factors[:, k]
        bad = ~np.isfinite(values) | (values < ACTUATOR_LOW[k]) | (values > ACTUATOR_HIGH[k]) \
            | (np.abs(values - snapped[:, k]) > 1e-6)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            step = "an integer" if IS_LED[k] else "a multiple of 0.1"
            text = rows[r][PERMUTATION[k]]
            raise ConfigError(f"{owner}: {csv_path}, line {lines[r]}: column {factor!r} holds {text!r}; "
                              f"expected {step} in [{ACTUATOR_LOW[k]:g}, {ACTUATOR_HIGH[k]:g}]")
    files = tuple(row[-1] for row in rows)
    empty = [line for line, file in zip(lines, files) if not file]
    if empty:
        raise ConfigError(f"{owner}: {csv_path}, line {empty[0]}: column {IMAGE_COLUMN!r} is empty")
    return Experiment(name, folder, csv_path, snapped, files, tuple(lines), file_sha256(csv_path))


def read_images(experiment: Experiment, rows: slice, size: int, owner: str, progress: bool = False) -> np.ndarray:
    """The images of ``experiment``'s ``rows``, uint8 [N, size, size, 3], from ``images_64/`` (format detected by
    PIL; area-averaged with PIL's BOX filter when ``size`` < 64)."""
    from PIL import Image  # lazily: listing and validating datasets stays light

    files, lines = experiment.image_files[rows], experiment.lines[rows]
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    indices = range(len(files))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"reading {experiment.name}", unit="image", leave=False, disable=None)
    folder = experiment.folder / f"images_{PUBLISHED_SIZE}"
    for i in indices:
        path = folder / files[i]
        where = f"named on line {lines[i]} of {experiment.csv_path}"
        if not path.is_file():
            raise ConfigError(f"{owner}: image file {path} is missing ({where})")
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except OSError as error:
            raise ConfigError(f"{owner}: image file {path} cannot be read ({where}): {error}") from None
        if image.size != (PUBLISHED_SIZE, PUBLISHED_SIZE):
            raise ConfigError(f"{owner}: image file {path} is {image.size[0]}x{image.size[1]} pixels ({where}); "
                              f"expected {PUBLISHED_SIZE}x{PUBLISHED_SIZE}")
        if size != PUBLISHED_SIZE:
            image = image.resize((size, size), Image.Resampling.BOX)
        images[i] = np.asarray(image)
    return images


@dataclass(frozen=True)
class ChamberParams:
    """Parameters of the published light-tunnel data (``lt_crl_benchmark_v1``)."""

    # the folder that holds lt_crl_benchmark_v1/ (downloaded from the Causal Chamber project); not in the cell hash
    root: str = location_field("")
    experiment: Literal["buchholz_1"] = "buchholz_1"
    size: int = 64  # image side; the published images are 64 px, smaller sizes are area-averaged with PIL
    # the environments mode: the training split pools the observations with the five published interventional
    # experiments (stored environments)
    environments: bool = legacy_field(False, legacy=False)

    def __post_init__(self) -> None:
        owner = "dataset 'chamber'"
        require(bool(self.root), owner, "root", f"the folder that holds {BENCHMARK}/ (download the dataset from the "
                "Causal Chamber project: github.com/juangamella/causal-chamber)", self.root)
        require(0 < self.size <= PUBLISHED_SIZE, owner, "size", f"an integer in 1..{PUBLISHED_SIZE} (the published "
                "images are 64 px)", self.size)


@register_dataset("chamber")
class Chamber(SCMDataset):
    """The real light-tunnel images and set-points of ``lt_crl_benchmark_v1`` (module docstring), read from disk.

    ``noise`` is the linear SCM's noise abduced from the set-points (:func:`abduce`) with the population
    standardisation (mean 0, the SCM's sd: the generator used its own sample's, which is not published), so
    ``solve(noise)`` gives the factors back and ``intervene()`` is the SCM's prediction. There is no renderer:
    ``render`` raises :class:`~crlbench.core.errors.NotApplicable`, and so do the metrics that need it.
    """

    name = "chamber"
    version = "1.0"
    Params = ChamberParams
    split_names = ("train", "val", "test")
    original_order = PUBLISHED_ORDER
    permutation = PERMUTATION
    adjacency = ADJACENCY
    environment_source = "stored"  # the published interventional experiments
    satisfies = frozenset({"linear_scm"})  # buchholz_1's linear Gaussian SCM (up to clipping and rounding)
    unidentifiable = {
        "pol_1": "by Malus's law only cos^2(pol_1 - pol_2) of the polariser angles reaches the camera (NMI paper, "
                 "Appendix IV.2.2): at most their difference, up to sign and 180 degrees, is in the images",
        "pol_2": "as pol_1: only cos^2(pol_1 - pol_2) reaches the camera",
    }

    def __init__(self, cache_dir=None, **params: Any) -> None:
        self.standardisation = Standardisation.population()
        self._experiments: dict[int | None, Experiment] = {}
        super().__init__(cache_dir, **params)

    @property
    def owner(self) -> str:
        return f"dataset {self.name!r}"

    def _benchmark(self) -> Path:
        root = Path(self.params.root).expanduser()
        benchmark = root / BENCHMARK
        if not benchmark.is_dir():
            names = ", ".join(f"{self.params.experiment}_{suffix}" for suffix in ("obs", *PUBLISHED_ORDER))
            raise ConfigError(f"{self.owner}: parameter 'root' = {self.params.root!r}: folder {benchmark} is missing; "
                              f"expected the folder that holds {BENCHMARK}/ with the experiments {names} (download "
                              f"{BENCHMARK} from the Causal Chamber project, github.com/juangamella/causal-chamber)")
        return benchmark

    def _experiment(self, target: int | None) -> Experiment:
        if target not in self._experiments:
            name = experiment_names(self.params.experiment)[target]
            self._experiments[target] = read_experiment(self._benchmark(), name, self.owner)
        return self._experiments[target]

    def factor_definitions(self) -> tuple[Factor, ...]:
        return factor_definitions()

    def mechanism(self, k: int, factors: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return mechanism(self.standardisation, k, factors, noise)

    def sample_splits(self) -> dict[str, dict[str, np.ndarray]]:
        factors = self._experiment(None).factors
        noise = abduce(self.standardisation, factors)
        bounds = np.cumsum((0, *split_counts(len(factors))))
        return {name: {"factors": factors[start:stop], "noise": noise[start:stop]}
                for name, start, stop in zip(self.split_names, bounds[:-1], bounds[1:])}

    def sample_environments(self) -> dict[str, np.ndarray]:
        """The first ``int(0.8 n)`` rows (the training part) of each interventional experiment, in card order:
        environment k + 1 intervenes on card factor k."""
        blocks: dict[str, list[np.ndarray]] = {"factors": [], "noise": [], "environment": [], "environment_targets": []}
        for k in range(len(FACTOR_NAMES)):
            experiment = self._experiment(k)
            n_train = split_counts(len(experiment.factors))[0]
            factors = experiment.factors[:n_train]
            blocks["factors"].append(factors)
            blocks["noise"].append(abduce(self.standardisation, factors))
            blocks["environment"].append(np.full(n_train, k + 1, dtype=np.int64))
            blocks["environment_targets"].append(np.full(n_train, k, dtype=np.int64))
        return {key: np.concatenate(value) for key, value in blocks.items()}

    def generate(self, progress: bool = True) -> dict[str, np.ndarray]:
        """The observational experiment's images and arrays, split by row order (no cache involved)."""
        experiment = self._experiment(None)
        arrays, start = {}, 0
        for name, design in self._designs.items():
            stop = start + len(design["factors"])
            arrays[f"{name}/factors"], arrays[f"{name}/noise"] = design["factors"], design["noise"]
            rows = slice(start, stop)
            arrays[f"{name}/images"] = read_images(experiment, rows, self.image_size, self.owner, progress)
            start = stop
        return arrays

    def generate_environments(self, progress: bool = True) -> dict[str, np.ndarray]:
        """The images of :meth:`sample_environments`'s rows."""
        images = []
        for k in range(len(FACTOR_NAMES)):
            experiment = self._experiment(k)
            rows = slice(0, split_counts(len(experiment.factors))[0])
            images.append(read_images(experiment, rows, self.image_size, self.owner, progress))
        return {"images": np.concatenate(images)}

    def render_batch(self, factors: np.ndarray, noise: np.ndarray, size: int) -> np.ndarray:
        raise NotApplicable(f"{self.owner} holds camera images and has no renderer; a metric that draws "
                            "counterfactual images needs a simulated dataset (chamber_f3)")

    def _observational_params(self) -> dict[str, Any]:
        """Without ``root`` (the same files anywhere share a cache entry), with the observational CSV's SHA-256."""
        params = {key: value for key, value in super()._observational_params().items() if key != "root"}
        return {**params, "csv_sha256": self._experiment(None).csv_sha256}

    def _load_environments(self) -> np.ndarray:
        """As the base's, keyed by the interventional CSVs' SHA-256 too."""
        if self._environment_images is None:
            digests = [self._experiment(k).csv_sha256 for k in range(len(FACTOR_NAMES))]
            metadata = {"environments": "stored", "csv_sha256": digests}
            key = content_key(self.name, self.version, {**self._observational_params(), **metadata})
            self._environment_images = self._cached(key, self.generate_environments, metadata)[0]["images"]
        return self._environment_images

    def choices(self) -> dict[str, str]:
        size = ("64 px, as published" if self.image_size == PUBLISHED_SIZE else
                f"{self.image_size} px: the published 64 px images area-averaged with PIL's BOX filter")
        return {
            **choices_shared(),
            "data": f"the published {BENCHMARK} experiments of {self.params.experiment} read from parameter 'root': "
                    f"real camera images (JPEG, aperture 1.8, ISO 500, 1/200 s), {size}; licence CC BY 4.0",
            "environments": "stored: the training part (first int(0.8 n) rows) of each published interventional "
                            "experiment; environment k + 1 intervenes on card factor k (blue, green, pol_1, red, "
                            "pol_2); no truncation to the shortest experiment",
            "noise": "the linear SCM's noise abduced from the set-points with mean 0 and the SCM's observational sd "
                     "(the generator's own sample mean/sd are not published); solve(noise) gives the factors back",
            "renderer": "none: metrics that render counterfactual images are not applicable; intervene() is the "
                        "linear SCM's prediction, not a measurement",
        }
