"""The dataset contract: a structural causal model (SCM), its renderer, its card and cached splits.

A dataset is a list of mechanisms in a topological order, ``factor_k = f_k(parents_k, noise_k)``.
From that one definition come sampling (solve the mechanisms in order), the ground-truth
intervention ``do(factor_k = v)`` (abduction-action-prediction: keep the noise, set factor k,
recompute its descendants) and, through the renderer, the true counterfactual image.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from crlbench.core.errors import ConfigError, NotApplicable, accepted, unknown_name
from crlbench.core.graph import descendants
from crlbench.core.params import parse_params
from crlbench.datasets.cache import ArrayCache, content_key

RENDER_CHUNK = 256  # images rendered per vectorised call; bounds memory at about 30 MB at 64x64

# Independent random streams derived from a dataset seed (numpy SeedSequence spawn keys).
STREAMS = {"split": 0, "scm_noise": 1, "render_noise": 2, "pairs": 3, "environments": 4}

# The arrays of a weakly supervised pair's second half, per row of a split (:meth:`SCMDataset.pairs`).
PAIR_KEYS = ("images_after", "factors_after", "intervention_targets")
PAIRS_VERSION = "1"  # of the generated pairs: part of the cache key, and of the hash of cells that train on pairs

# The environments mode (:meth:`SCMDataset.split` with the dataset parameter ``environments``): per-row extras
# of the pooled training split, the parameters that switch it on, and the version of the generated environments.
ENVIRONMENT_KEYS = ("environment", "environment_targets")
ENVIRONMENT_PARAMS = ("environments", "intervention")
ENVIRONMENTS_VERSION = "1"


def random_stream(seed: int, stream: str, *sub_streams: int) -> np.random.Generator:
    """A generator for one named stream of ``seed`` (and optional sub-streams); none share draws."""
    spawn_key = (STREAMS[stream], *sub_streams)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn_key))


def default_cache_dir() -> Path:
    """``$CRLBENCH_WORKDIR/data``, by default ``./runs/data``."""
    return Path(os.environ.get("CRLBENCH_WORKDIR", "runs")) / "data"


@dataclass(frozen=True)
class Factor:
    """One causal factor: its name, kind and the values an intervention may set."""

    name: str
    kind: Literal["continuous", "discrete"]
    low: float
    high: float
    grid: tuple[float, ...] | None = None  # the values of a discrete factor
    unit: str = ""

    def check(self, values: np.ndarray, where: str) -> None:
        """Raise a ConfigError unless every value is one this factor can take."""
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"{where}: value for factor {self.name!r} must be finite")
        if self.kind == "discrete":
            ok = np.isclose(values[..., None], np.asarray(self.grid), rtol=0.0, atol=1e-9).any(axis=-1)
        else:
            ok = (values >= self.low) & (values <= self.high)
        if not np.all(ok):
            bad = values[~ok].flat[0]
            raise ConfigError(
                f"{where}: value {bad:g} is outside factor {self.name!r}; accepted: {self.describe()}"
            )

    def describe(self) -> str:
        if self.kind == "discrete":
            grid = self.grid
            steps = np.diff(grid)
            if len(grid) > 6 and np.allclose(steps, steps[0]):
                return f"{grid[0]:g}, {grid[1]:g}, ..., {grid[-1]:g} (step {steps[0]:g})"
            if len(grid) > 6:
                return f"the {len(grid)} grid values from {grid[0]:g} to {grid[-1]:g}"
            return accepted(f"{g:g}" for g in grid)
        return f"[{self.low:g}, {self.high:g}]"

    def sweep(self, count: int) -> np.ndarray:
        """``count`` values spread over the factor's range (grid values for a discrete factor)."""
        if self.kind == "discrete":
            picks = np.linspace(0, len(self.grid) - 1, count).round().astype(int)
            return np.asarray(self.grid)[picks]
        return np.linspace(self.low, self.high, count)


@dataclass(frozen=True)
class DatasetCard:
    """What a dataset is: factors in topological order, graph, image shape, statistics, provenance.

    ``adjacency[i, j] == 1`` means factor i causes factor j. ``permutation[k]`` is the index in the
    original publication's label order (``original_order``) of factor k, so
    ``labels_here = labels_original[:, permutation]``.
    """

    name: str
    version: str
    factors: tuple[Factor, ...]
    adjacency: tuple[tuple[int, ...], ...]
    image_shape: tuple[int, int, int]
    split_sizes: dict[str, int]
    label_stats: dict[str, tuple[float, ...]]  # mean, std, min, max of the train factors
    original_order: tuple[str, ...]
    permutation: tuple[int, ...]
    params: dict[str, Any]
    choices: dict[str, str] = field(default_factory=dict)  # every decision the reference left open

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    @property
    def graph(self) -> np.ndarray:
        return np.asarray(self.adjacency, dtype=np.int64)

    def index(self, target: int | str, where: str = "intervene") -> int:
        """The position of a factor given by index or name."""
        names = self.factor_names
        if isinstance(target, str):
            if target not in names:
                raise unknown_name("factor", target, names, where=f"{where}: ")
            return names.index(target)
        is_index = isinstance(target, (int, np.integer)) and not isinstance(target, bool)
        if is_index and 0 <= target < len(names):
            return int(target)
        raise ConfigError(
            f"{where}: target {target!r} is out of range; accepted: 0..{len(names) - 1} "
            f"or a name ({accepted(names)})"
        )

    def parents(self, k: int) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.graph[:, k])]

    def descendants(self, k: int) -> list[int]:
        """All factors downstream of k, in topological order."""
        return sorted(descendants(self.adjacency, k))

    def to_dict(self) -> dict[str, Any]:
        card = asdict(self)
        card["adjacency"] = [list(row) for row in self.adjacency]
        return card


@dataclass
class Split:
    """One split: images uint8 [N, H, W, C], factors float64 [N, K], exogenous noise [N, K].

    ``extras`` holds what a dataset adds (legacy integer labels, grid positions, intervention
    pairs); its card and module docstring say what each key means.
    """

    name: str
    images: np.ndarray
    factors: np.ndarray
    noise: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.factors)


class SCMDataset(ABC):
    """Base class of the registered datasets.

    Subclasses define ``name``, ``version``, ``Params`` (a dataclass of typed parameters whose
    defaults are the reference values), the factors, the mechanisms, the sampling of each split and
    the renderer. Arrays are generated once and cached under ``cache_dir`` by a hash of
    (name, version, parameters).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Params: ClassVar[type]
    split_names: ClassVar[tuple[str, ...]] = ("train", "test")
    original_order: ClassVar[tuple[str, ...]]
    permutation: ClassVar[tuple[int, ...]]
    adjacency: ClassVar[tuple[tuple[int, ...], ...]]
    # Image arrays a split stores, each rendered from (factors key, noise key) of that split.
    image_views: ClassVar[dict[str, tuple[str, str]]] = {"images": ("factors", "noise")}
    # Weakly supervised pairs (:meth:`pairs`): "stored" when ``sample_splits`` draws them with the observations
    # (the extras hold ``PAIR_KEYS``), "generated" when drawn from the SCM on first use, None when there are none.
    pair_source: ClassVar[str | None] = None
    pairs_version: ClassVar[str] = PAIRS_VERSION  # in the hash of a cell that trains on generated pairs
    # Interventional environments (:meth:`split` with the parameter ``environments``): "generated" when drawn from
    # the SCM (crlbench.datasets.environments), "stored" when the dataset's own files hold them, None when there are none.
    environment_source: ClassVar[str | None] = None
    environments_version: ClassVar[str] = ENVIRONMENTS_VERSION  # in the hash of a cell on generated environments
    # Factors no method can recover from the images, with the reason (shown on the card; a negative control's)
    unidentifiable: ClassVar[dict[str, str]] = {}
    # What the data satisfy of the assumptions methods make (``CausalModel.assumptions`` keys): "linear_scm" for a
    # linear Gaussian SCM; the environments mode adds "one_intervention_per_latent" (:meth:`satisfied`)
    satisfies: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cache_dir: str | os.PathLike | None = None, **params: Any) -> None:
        self.params = parse_params(self.Params, params, owner=f"dataset {self.name!r}")
        self.cache = ArrayCache(cache_dir if cache_dir is not None else default_cache_dir())
        self._designs = self.sample_splits()
        self.environment_plan: dict[str, Any] | None = None
        self._environment_rows = self.sample_environments() if self.environments else None
        self.card = self._build_card()
        self._arrays: dict[str, np.ndarray] | None = None
        self._pair_arrays: dict[str, np.ndarray] | None = None
        self._environment_images: np.ndarray | None = None
        self.loaded_from_cache: bool | None = None  # known once the arrays are loaded

    # -- what a subclass defines ---------------------------------------------------------------

    @abstractmethod
    def factor_definitions(self) -> tuple[Factor, ...]:
        """The factors in topological order."""

    @abstractmethod
    def mechanism(self, k: int, factors: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Factor k [N] from its parents (columns of ``factors``) and its noise ``noise[:, k]``."""

    @abstractmethod
    def sample_splits(self) -> dict[str, dict[str, np.ndarray]]:
        """Per split, the arrays other than images: at least ``factors`` and ``noise``."""

    @abstractmethod
    def render_batch(self, factors: np.ndarray, noise: np.ndarray, size: int) -> np.ndarray:
        """Draw ``size`` x ``size`` images for a small batch (called in chunks by :meth:`render`)."""

    def choices(self) -> dict[str, str]:
        """Decisions this dataset makes where the reference leaves a choice (shown on the card)."""
        return {}

    # -- the public interface ------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return self.params.size

    def solve(self, noise: np.ndarray) -> np.ndarray:
        """Factors [N, K] from exogenous noise, solving the mechanisms in topological order."""
        factors = np.zeros(noise.shape, dtype=np.float64)
        for k in range(noise.shape[1]):
            factors[:, k] = self.mechanism(k, factors, noise)
        return factors

    def split(self, name: str) -> Split:
        """The split called ``name`` (generated and cached on first use)."""
        if name not in self.split_names:
            raise unknown_name("split", name, self.split_names, where=f"dataset {self.name!r}: ")
        arrays = self._load()
        prefix = f"{name}/"
        own = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
        images, factors, noise = own.pop("images"), own.pop("factors"), own.pop("noise")
        if self.environments and name == self.split_names[0]:
            return self._pooled(name, images, factors, noise)
        return Split(name, images, factors, noise, own)

    def satisfied(self) -> frozenset[str]:
        """The assumption keys these data satisfy: :attr:`satisfies`, plus one perfect intervention on each factor
        in the environments mode (each environment's target is set independently of its parents)."""
        extra = {"one_intervention_per_latent"} if self.environments and self._hard_environments() else set()
        return frozenset(self.satisfies) | extra

    def _hard_environments(self) -> bool:
        plan = self.environment_plan
        return plan is None or all(kind == "hard" for kind in plan["kinds"])

    @property
    def environments(self) -> bool:
        """Whether the training split pools the observational and the interventional environments."""
        return bool(getattr(self.params, "environments", False))

    def sample_environments(self) -> dict[str, np.ndarray]:
        """The interventional rows of the training split, without images: ``factors``, ``noise``,
        ``environment`` (1..K) and ``environment_targets`` (the intervened factor, card order). Generated
        environments follow :mod:`crlbench.datasets.environments` and set :attr:`environment_plan`; a dataset
        whose files hold its environments (``environment_source = "stored"``) overrides this."""
        from crlbench.datasets import environments

        if self.environment_source != "generated":
            raise NotApplicable(f"dataset {self.name!r} has no interventional environments; accepted: a dataset with "
                                "environment_source 'generated' or 'stored' (pendulum, flow, causal_circuit, chamber_f3, chamber)")
        observations = self._designs[self.split_names[0]]
        kind = getattr(self.params, "intervention", "hard")
        self.environment_plan = environments.design(self, observations, kind, random_stream(self.params.seed, "environments", 0))
        return environments.sample(self, observations, self.environment_plan, random_stream(self.params.seed, "environments", 1))

    def generate_environments(self, progress: bool = True) -> dict[str, np.ndarray]:
        """The images of the interventional rows (:meth:`sample_environments`), rendered now."""
        rows = self._environment_rows
        return {"images": self.render(rows["factors"], rows["noise"], progress=progress)}

    def _pooled(self, name: str, images: np.ndarray, factors: np.ndarray, noise: np.ndarray) -> Split:
        """The observations followed by every interventional environment, with ``ENVIRONMENT_KEYS`` per row
        (environment 0 and target -1 for an observation); the observations' other extras are left out."""
        rows = self._environment_rows
        extras = {"environment": np.concatenate([np.zeros(len(factors), dtype=np.int64), rows["environment"]]),
                  "environment_targets": np.concatenate([np.full(len(factors), -1, dtype=np.int64),
                                                         rows["environment_targets"]])}
        return Split(name, np.concatenate([images, self._load_environments()]), np.concatenate([factors, rows["factors"]]),
                     np.concatenate([noise, rows["noise"]]), extras)

    def pairs(self, name: str) -> dict[str, np.ndarray]:
        """The second half of a weakly supervised pair for every row of split ``name`` (ILCM's convention,
        Brehmer et al., NeurIPS 2022): ``images_after`` uint8 [N, H, W, C], ``factors_after`` [N, K] and
        ``intervention_targets`` [N] (the intervened factor, -1 for none).

        Generated pairs (``pair_source = "generated"``) are drawn as CausalCircuit's are: the target is
        uniform over {none, each factor}; it is set to a fresh value independent of its parents, the value
        of the same factor in another row of the split drawn at random (its observed marginal, so grid
        factors stay on their grid); its descendants are recomputed from the same noise (abduction-action-
        prediction, :meth:`intervene`) and the result is rendered with the same noise. They come from the
        seed's own ``pairs`` stream and are cached beside the splits; the observations are unchanged.
        Raises :class:`~crlbench.core.errors.NotApplicable` on a dataset without pairs.
        """
        if self.environments:
            raise NotApplicable(f"dataset {self.name!r}: pairs and environments are two data modes; a method that trains "
                                "on pairs needs the dataset without the parameter 'environments'")
        if self.pair_source is None:
            raise NotApplicable(f"dataset {self.name!r} has no intervention pairs (pair_source is None); a method "
                                "that trains on pairs needs a dataset that draws them (causal_circuit, pendulum, flow)")
        if name not in self.split_names:
            raise unknown_name("split", name, self.split_names, where=f"dataset {self.name!r}: ")
        if self.pair_source == "stored":
            extras = self.split(name).extras
            return {key: extras[key] for key in PAIR_KEYS}
        arrays = self._load_pairs()
        return {key: arrays[f"{name}/{key}"] for key in PAIR_KEYS}

    def generate_pairs(self, progress: bool = True) -> dict[str, np.ndarray]:
        """The generated pairs of every split (:meth:`pairs`), rendered now (no cache involved)."""
        arrays = {}
        for index, name in enumerate(self.split_names):
            split = self.split(name)
            rng = random_stream(self.params.seed, "pairs", index)
            n, k = split.factors.shape
            targets = rng.integers(-1, k, size=n)
            donors = rng.integers(0, n, size=n)
            after = split.factors.copy()
            for target in range(k):
                rows = targets == target
                if rows.any():
                    after[rows] = self._do(split.factors[rows], split.noise[rows], target, split.factors[donors[rows], target])
            arrays[f"{name}/images_after"] = self.render(after, split.noise, progress=progress)
            arrays[f"{name}/factors_after"] = after
            arrays[f"{name}/intervention_targets"] = targets
        return arrays

    def intervene(
        self, factors: np.ndarray, noise: np.ndarray, target: int | str, value: float | np.ndarray
    ) -> np.ndarray:
        """Factors after ``do(target = value)``: descendants recomputed from the same noise.

        Non-descendants of the target are returned bit-identical. ``value`` is a scalar or one
        value per sample, and must lie in the factor's declared range (``card.factors``).
        """
        factors, noise = self._check_factors_noise(factors, noise, "intervene")
        k = self.card.index(target)
        values = np.asarray(value, dtype=np.float64)
        if values.ndim > 1 or (values.ndim == 1 and len(values) != len(factors)):
            raise ConfigError(
                f"dataset {self.name!r}: intervene expects one value or {len(factors)} values (one per "
                f"sample); got shape {values.shape}"
            )
        values = np.broadcast_to(values, (len(factors),))
        self.card.factors[k].check(values, f"dataset {self.name!r}: intervene")
        return self._do(factors, noise, k, values)

    def _do(self, factors: np.ndarray, noise: np.ndarray, k: int, values: np.ndarray) -> np.ndarray:
        """``do(factor_k = values)`` on valid input (abduction-action-prediction)."""
        factors = factors.copy()
        factors[:, k] = values
        for child in sorted(descendants(self.adjacency, k)):
            factors[:, child] = self.mechanism(child, factors, noise)
        return factors

    def render(
        self, factors: np.ndarray, noise: np.ndarray, size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Images uint8 [N, size, size, 3] of the given factors and noise."""
        factors, noise = self._check_factors_noise(factors, noise, "render")
        size = self.image_size if size is None else size
        if not isinstance(size, (int, np.integer)) or size <= 0:
            raise ConfigError(f"dataset {self.name!r}: render size must be a positive integer; got {size!r}")
        images = np.empty((len(factors), size, size, 3), dtype=np.uint8)
        starts = range(0, len(factors), RENDER_CHUNK)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"rendering {self.name}", unit="chunk", leave=False, disable=None)
        for start in starts:
            stop = start + RENDER_CHUNK
            images[start:stop] = self.render_batch(factors[start:stop], noise[start:stop], size)
        return images

    def generate(self, progress: bool = True) -> dict[str, np.ndarray]:
        """All arrays of all splits, rendered now (no cache involved)."""
        arrays = {}
        for split_name, design in self._designs.items():
            for key, value in design.items():
                arrays[f"{split_name}/{key}"] = value
            for view, (factor_key, noise_key) in self.image_views.items():
                arrays[f"{split_name}/{view}"] = self.render(
                    design[factor_key], design[noise_key], progress=progress
                )
        return arrays

    @property
    def cache_key(self) -> str:
        """The key of the observational arrays, whatever the environments mode: its parameters are left out."""
        return content_key(self.name, self.version, self._observational_params())

    def _observational_params(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self.params).items() if key not in ENVIRONMENT_PARAMS}

    def cache_path(self) -> Path:
        return self.cache.paths(self.cache_key)[0]

    # -- internals -----------------------------------------------------------------------------

    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays, self.loaded_from_cache = self._cached(self.cache_key, self.generate, {})
        return self._arrays

    def _load_pairs(self) -> dict[str, np.ndarray]:
        if self._pair_arrays is None:
            key = content_key(self.name, self.version, {**asdict(self.params), "pairs": self.pairs_version})
            self._pair_arrays, _ = self._cached(key, self.generate_pairs, {"pairs": self.pairs_version})
        return self._pair_arrays

    def _load_environments(self) -> np.ndarray:
        if self._environment_images is None:
            version = {"environments": self.environments_version, "intervention": getattr(self.params, "intervention", "hard")}
            key = content_key(self.name, self.version, {**self._observational_params(), **version})
            self._environment_images = self._cached(key, self.generate_environments, version)[0]["images"]
        return self._environment_images

    def _cached(self, key: str, generate, metadata: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        """The arrays cached under ``key``, or ``generate()``'s, saved there with the card and ``metadata``;
        and whether they came from the cache."""
        arrays = self.cache.load(key)
        if arrays is not None:
            return arrays, True
        arrays = generate()
        self.cache.save(key, arrays, {"card": self.card.to_dict(), **metadata})
        return arrays, False

    def _build_card(self) -> DatasetCard:
        factors = self.factor_definitions()
        train = self._designs[self.split_names[0]]["factors"]
        stats = {
            "mean": train.mean(axis=0),
            "std": train.std(axis=0),
            "min": train.min(axis=0),
            "max": train.max(axis=0),
        }
        return DatasetCard(
            name=self.name,
            version=self.version,
            factors=factors,
            adjacency=self.adjacency,
            image_shape=(self.image_size, self.image_size, 3),
            split_sizes=self._split_sizes(),
            label_stats={key: tuple(float(v) for v in value) for key, value in stats.items()},
            original_order=self.original_order,
            permutation=self.permutation,
            params=asdict(self.params),
            choices=self._choices(),
        )

    def _split_sizes(self) -> dict[str, int]:
        sizes = {name: len(design["factors"]) for name, design in self._designs.items()}
        if self._environment_rows is not None:
            sizes[self.split_names[0]] += len(self._environment_rows["factors"])
        return sizes

    def _choices(self) -> dict[str, str]:
        """:meth:`choices`, with the environments' design and the unidentifiable factors when there are any."""
        choices = dict(self.choices())
        if self.environment_plan is not None:
            from crlbench.datasets import environments

            names = tuple(factor.name for factor in self.factor_definitions())
            choices["environments"] = environments.describe(self.environment_plan, names)
        for name, reason in self.unidentifiable.items():
            choices[f"unidentifiable {name}"] = reason
        return choices

    def _check_factors_noise(self, factors, noise, where: str) -> tuple[np.ndarray, np.ndarray]:
        factors = np.asarray(factors, dtype=np.float64)
        noise = np.asarray(noise, dtype=np.float64)
        k = len(self.adjacency)
        if factors.ndim != 2 or factors.shape[1] != k or noise.shape != factors.shape:
            raise ConfigError(
                f"dataset {self.name!r}: {where} expects factors and noise of shape [N, {k}]; "
                f"got {factors.shape} and {noise.shape}"
            )
        if not (np.all(np.isfinite(factors)) and np.all(np.isfinite(noise))):
            raise ConfigError(f"dataset {self.name!r}: {where} got NaN or infinite factors or noise")
        return factors, noise


def random_test_mask(count: int, test_fraction: float, seed: int, owner: str) -> np.ndarray:
    """A seeded random choice of ``round(test_fraction * count)`` test samples, as a mask."""
    size = round(test_fraction * count)
    if not 0 < size < count:
        raise ConfigError(
            f"{owner}: parameter 'test_fraction' = {test_fraction} leaves an empty split of the {count} "
            f"samples; accepted: between {1 / count:.2g} and {1 - 1 / count:.6g}"
        )
    order = random_stream(seed, "split").permutation(count)
    test = np.zeros(count, dtype=bool)
    test[order[: round(test_fraction * count)]] = True
    return test


def grid_split(test_mask: np.ndarray, arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Split per-sample arrays into ``train`` (mask False) and ``test`` (mask True)."""
    return {
        "train": {key: value[~test_mask] for key, value in arrays.items()},
        "test": {key: value[test_mask] for key, value in arrays.items()},
    }
