"""The Causal Chamber light tunnel: the reader of the published lt_crl_benchmark_v1 files (on a synthetic fixture
in the published layout, tests/chamber_fixture.py) and the simulated F3 control (buchholz_1's SCM, model F3)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chamber_fixture import ROWS, write_benchmark
from crlbench.core import registry
from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.datasets.light_tunnel import (FACTOR_NAMES, INT_MEANS, INT_VARIANCES, PERMUTATION, PUBLISHED_ORDER,
                                            PUBLISHED_WEIGHTS, WEIGHTS, population_std, split_counts)
from crlbench.datasets.chamber_f3 import (EXPOSURE, SENSOR_RESPONSE, TRANSMISSION_ALIGNED, TRANSMISSION_CROSSED,
                                          WHITE_BALANCE, f3_colours, hexagon_mask, render_f3)

BLUE, GREEN, POL_1, RED, POL_2 = range(5)  # card order
TO_PUBLISHED = np.argsort(PERMUTATION)
CONTROL = {"n_per_environment": 200, "size": 16}


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("chamber")
    return root, write_benchmark(root)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("chamber_cache")


def chamber(root, cache, **params):
    return registry.dataset("chamber", cache_dir=cache, root=str(root), **params)


def copy_of(benchmark, tmp_path) -> Path:
    shutil.copytree(benchmark[0], tmp_path / "data")
    return tmp_path / "data"


# -- shared facts ----------------------------------------------------------------------------------------


def test_card_order_is_topological_and_permutes_the_published_labels():
    assert np.all(np.tril(WEIGHTS) == 0)  # every edge points forward in card order
    assert tuple(PUBLISHED_ORDER[i] for i in PERMUTATION) == FACTOR_NAMES
    published = np.arange(5)[None, :] * np.ones((3, 1))
    assert np.array_equal(published[:, list(PERMUTATION)][:, TO_PUBLISHED], published)
    edges = {(PUBLISHED_ORDER[i], PUBLISHED_ORDER[j]) for i, j in zip(*np.nonzero(PUBLISHED_WEIGHTS))}
    assert edges == {("green", "red"), ("pol_1", "red"), ("blue", "green"), ("green", "pol_2"), ("blue", "pol_2")}


def test_population_sd_of_the_published_scm():
    np.testing.assert_allclose(population_std()[TO_PUBLISHED], [1.952, 1.402, 1.003, 1.399, 2.086], atol=1e-3)


def test_split_counts_follow_crl_sanity_check():
    assert split_counts(10000) == (8000, 1000, 1000)
    assert split_counts(25) == (20, 2, 3)


# -- the reader -----------------------------------------------------------------------------------------


def test_reader_reads_set_points_in_card_order_split_by_row_order(benchmark, cache):
    root, written = benchmark
    dataset = chamber(root, cache)
    expected = written["obs"]["factors"][:, list(PERMUTATION)]
    assert dataset.card.factor_names == FACTOR_NAMES and dataset.card.original_order == PUBLISHED_ORDER
    assert dataset.card.split_sizes == {"train": 32, "val": 4, "test": 4}
    pieces = [dataset.split(name).factors for name in ("train", "val", "test")]
    np.testing.assert_array_equal(np.concatenate(pieces), expected)
    assert dataset.card.graph.tolist() == (WEIGHTS != 0).astype(int).tolist()


def test_reader_images_are_the_decoded_files(benchmark, cache):
    root, written = benchmark
    val = chamber(root, cache).split("val")
    assert val.images.shape == (4, 64, 64, 3) and val.images.dtype == np.uint8
    file = written["obs"]["folder"] / "images_64" / written["obs"]["image_files"][32]
    np.testing.assert_array_equal(val.images[0], np.asarray(Image.open(file)))
    from crlbench.datasets.chamber_f3 import render_f3_uint8

    rendered = render_f3_uint8(written["obs"]["factors"][32:36], 64).astype(float)
    assert np.abs(val.images - rendered).mean() < 3  # what was written, up to JPEG


def test_reader_area_averages_smaller_sizes_with_pil(benchmark, cache):
    root, written = benchmark
    test = chamber(root, cache, size=32).split("test")
    file = written["obs"]["folder"] / "images_64" / written["obs"]["image_files"][36]
    expected = np.asarray(Image.open(file).convert("RGB").resize((32, 32), Image.Resampling.BOX))
    np.testing.assert_array_equal(test.images[0], expected)
    with pytest.raises(ConfigError, match="'size'.*1..64"):
        chamber(root, cache, size=128)


def test_environments_pool_the_training_part_of_each_interventional_experiment(benchmark, cache):
    root, written = benchmark
    dataset = chamber(root, cache, environments=True)
    pooled = dataset.split("train")
    n_obs = split_counts(ROWS["obs"])[0]
    counts = [split_counts(ROWS[name])[0] for name in FACTOR_NAMES]
    assert len(pooled) == n_obs + sum(counts) == dataset.card.split_sizes["train"]
    assert set(pooled.extras) == {"environment", "environment_targets"}
    assert np.array_equal(np.bincount(pooled.extras["environment"]), [n_obs, *counts])
    assert np.array_equal(pooled.extras["environment_targets"], pooled.extras["environment"] - 1)
    for k, name in enumerate(FACTOR_NAMES):  # environment k + 1 is the experiment that intervenes on card factor k
        rows = pooled.extras["environment"] == k + 1
        np.testing.assert_array_equal(pooled.factors[rows], written[name]["factors"][:counts[k], list(PERMUTATION)])
        first = written[name]["folder"] / "images_64" / written[name]["image_files"][0]
        np.testing.assert_array_equal(pooled.images[np.flatnonzero(rows)[0]], np.asarray(Image.open(first)))
    observational = chamber(root, cache)
    np.testing.assert_array_equal(pooled.images[:n_obs], observational.split("train").images)
    for name in ("val", "test"):  # held-out splits stay observational
        split = dataset.split(name)
        assert split.extras == {} and np.array_equal(split.factors, observational.split(name).factors)


def test_reader_noise_gives_the_factors_back_and_there_is_no_renderer(benchmark, cache):
    dataset = chamber(benchmark[0], cache, environments=True)
    split = dataset.split("train")
    np.testing.assert_array_equal(dataset.solve(split.noise), split.factors)
    after = dataset.intervene(split.factors, split.noise, "pol_1", 45.0)
    np.testing.assert_array_equal(after[:, [BLUE, GREEN, POL_2]], split.factors[:, [BLUE, GREEN, POL_2]])
    with pytest.raises(NotApplicable, match="no renderer"):
        dataset.render(split.factors[:2], split.noise[:2])
    assert set(dataset.unidentifiable) == {"pol_1", "pol_2"}
    assert "cos^2(pol_1 - pol_2)" in dataset.card.choices["unidentifiable pol_1"]


def test_reader_caches_decoded_images_keyed_by_the_csv_not_the_folder(benchmark, cache, tmp_path):
    first = chamber(benchmark[0], cache)
    first.split("train")
    moved = chamber(copy_of(benchmark, tmp_path), cache)
    moved.split("train")
    assert moved.loaded_from_cache and moved.cache_key == first.cache_key
    csv_path = tmp_path / "data" / "lt_crl_benchmark_v1" / "buchholz_1_obs" / "buchholz_1_obs.csv"
    csv_path.write_text(csv_path.read_text().replace(",1.8,", ",2.8,"))  # an ignored column, yet other data
    assert chamber(tmp_path / "data", cache).cache_key != first.cache_key


def test_missing_root_names_the_parameter(tmp_path):
    with pytest.raises(ConfigError, match="parameter 'root'.*lt_crl_benchmark_v1"):
        registry.dataset("chamber", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"parameter 'root'.*folder .*lt_crl_benchmark_v1 is missing.*buchholz_1_obs"):
        registry.dataset("chamber", cache_dir=tmp_path, root=str(tmp_path))


def test_missing_experiment_folder_is_named(benchmark, tmp_path):
    root = copy_of(benchmark, tmp_path)
    shutil.rmtree(root / "lt_crl_benchmark_v1" / "buchholz_1_red")
    assert chamber(root, tmp_path / "cache").card.split_sizes["train"] == 32  # not needed without environments
    with pytest.raises(ConfigError, match=r"experiment folder .*buchholz_1_red is missing"):
        chamber(root, tmp_path / "cache", environments=True)


def test_missing_column_is_named(benchmark, tmp_path):
    root = copy_of(benchmark, tmp_path)
    csv_path = root / "lt_crl_benchmark_v1" / "buchholz_1_obs" / "buchholz_1_obs.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([lines[0].replace("pol_2", "polariser_2"), *lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match=r"buchholz_1_obs\.csv: column\(s\) 'pol_2' missing"):
        chamber(root, tmp_path / "cache")


def test_value_off_the_grid_names_file_line_and_column(benchmark, tmp_path):
    root = copy_of(benchmark, tmp_path)
    csv_path = root / "lt_crl_benchmark_v1" / "buchholz_1_obs" / "buchholz_1_obs.csv"
    lines = csv_path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[3].split(",")
    row[header.index("red")] = "300"
    csv_path.write_text("\n".join([*lines[:3], ",".join(row), *lines[4:]]) + "\n")
    with pytest.raises(ConfigError, match=r"buchholz_1_obs\.csv, line 4: column 'red' holds '300'"):
        chamber(root, tmp_path / "cache")


def test_missing_image_file_is_named(benchmark, tmp_path):
    root = copy_of(benchmark, tmp_path)
    file = benchmark[1]["obs"]["image_files"][5]
    (root / "lt_crl_benchmark_v1" / "buchholz_1_obs" / "images_64" / file).unlink()
    dataset = chamber(root, tmp_path / "cache")  # the CSV is read at once, the images on first use
    where = r"named on line 7 of .*buchholz_1_obs\.csv"
    with pytest.raises(ConfigError, match=rf"image file .*{file} is missing \({where}\)"):
        dataset.split("train")


# -- the F3 renderer --------------------------------------------------------------------------------------


def test_f3_draws_one_hexagon_on_black():
    mask = hexagon_mask(64)
    radius = 0.22 * 64
    assert mask[31, 32] and not mask[0, 0] and not mask[63, 63]
    assert abs(mask.sum() - 1.5 * np.sqrt(3) * radius**2) < 0.05 * mask.sum()
    widths, rows = mask.sum(axis=1), np.flatnonzero(mask.any(axis=1))
    assert abs(widths.max() - 2 * radius) <= 2  # vertices left and right (no rotation)
    assert abs(len(rows) - np.sqrt(3) * radius) <= 2  # flat top and bottom
    image = render_f3([200], [100], [50], [10.0], [20.0], 64)[0]
    inside = image[mask]
    assert np.all(inside == inside[0]) and np.all(image[~mask] == 0) and np.all(inside[0] > 0)


def test_f3_colour_follows_the_calibrated_formula():
    colour = f3_colours(np.array([255.0]), np.array([0.0]), np.array([0.0]), np.array([30.0]), np.array([30.0]))[0]
    expected = EXPOSURE * np.asarray(WHITE_BALANCE) * SENSOR_RESPONSE[:, 0] * TRANSMISSION_ALIGNED[:, 0]
    np.testing.assert_allclose(colour, expected, rtol=1e-12)
    crossed = f3_colours(np.array([255.0]), np.array([0.0]), np.array([0.0]), np.array([0.0]), np.array([90.0]))[0]
    np.testing.assert_allclose(crossed, expected / TRANSMISSION_ALIGNED[:, 0] * TRANSMISSION_CROSSED[:, 0], atol=1e-12)
    bright = render_f3([255], [255], [255], [0.0], [0.0], 8)[0]
    assert bright.max() == 1.0  # clipped to [0, 1]


def test_f3_sees_the_polarisers_only_through_cos2_of_their_difference():
    rgb = ([180.0] * 4, [90.0] * 4, [40.0] * 4)
    same = f3_colours(*rgb, np.array([10.0, -20.0, 40.0, -80.0]), np.array([40.0, 10.0, 10.0, -50.0]))
    np.testing.assert_allclose(same, np.repeat(same[:1], 4, axis=0), atol=1e-12)  # |difference| 30 (sign swapped too)
    folded = f3_colours(*(c[:1] for c in rgb), np.array([80.0]), np.array([-70.0]))  # 150 = 180 - 30
    np.testing.assert_allclose(folded, same[:1], atol=1e-12)
    angles = np.linspace(0.0, 90.0, 10)
    brightness = f3_colours(*([120.0] * 10 for _ in range(3)), angles, np.zeros(10)).sum(axis=1)
    assert np.all(np.diff(brightness) < 0)  # darker as the polarisers cross


@pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors:DeprecationWarning")  # the package's np.cross
def test_f3_agrees_with_the_causalchamber_package():
    models_f = pytest.importorskip("causalchamber.simulators.lt.image.models_f")
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(7)
    leds = {name: rng.integers(0, 256, 30).astype(float) for name in ("red", "green", "blue")}
    angles = {name: np.round(rng.uniform(-90, 90, 30), 1) for name in ("pol_1", "pol_2")}
    inputs = pandas.DataFrame({**leds, **angles})
    for size in (17, 64):
        simulator = models_f.ModelF3(S=SENSOR_RESPONSE.copy(), w_r=WHITE_BALANCE[0], w_g=WHITE_BALANCE[1],
                                     w_b=WHITE_BALANCE[2], exposure=EXPOSURE, Tp=TRANSMISSION_ALIGNED.copy(),
                                     Tc=TRANSMISSION_CROSSED.copy(), center_x=0.5, center_y=0.5, radius=0.22, offset=0,
                                     image_size=size)
        ours = render_f3(*(inputs[name].to_numpy() for name in PUBLISHED_ORDER), size)
        np.testing.assert_array_equal(ours, simulator.simulate_from_inputs(inputs))


# -- the F3 control ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control(cache):
    return registry.dataset("chamber_f3", cache_dir=cache, environments=True, n_per_environment=4000, size=8)


def test_control_factors_are_set_points_in_support(control):
    for name in control.split_names:
        split = control.split(name)
        for k, factor in enumerate(control.card.factors):
            factor.check(split.factors[:, k], f"chamber_f3 {name}")
        np.testing.assert_array_equal(control.solve(split.noise), split.factors)  # the noise is abduced
    assert control.card.split_sizes == {"train": 3200 * 6, "val": 400, "test": 400}


def test_control_observations_are_standardised_by_their_own_sample(control):
    np.testing.assert_allclose(control.standardisation.mean, 0.0, atol=0.1)
    np.testing.assert_allclose(control.standardisation.std, population_std(), rtol=0.05)
    observations = np.concatenate([control.split("train").factors[:3200], control.split("val").factors,
                                   control.split("test").factors])
    z = (control.standardisation.to_raw(observations) - control.standardisation.mean) / control.standardisation.std
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.02)  # exactly 0 before rounding
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.02)


def test_control_environments_follow_the_published_interventions(control):
    pooled = control.split("train")
    environment = pooled.extras["environment"]
    assert np.array_equal(np.bincount(environment), [3200] * 6)
    observations = control.standardisation.to_raw(pooled.factors[environment == 0])
    for k in range(5):
        raw = control.standardisation.to_raw(pooled.factors[environment == k + 1])
        assert abs(raw[:, k].mean() - INT_MEANS[k]) < 0.1, FACTOR_NAMES[k]
        assert abs(raw[:, k].var() / INT_VARIANCES[k] - 1) < 0.15, FACTOR_NAMES[k]
        for j in (j for j in range(5) if j != k and j not in control.card.descendants(k)):
            assert abs(raw[:, j].mean() - observations[:, j].mean()) < 0.15 * population_std()[j]


def test_control_card_says_what_the_images_cannot_carry(control):
    choices = control.card.choices
    assert set(control.unidentifiable) == {"pol_1", "pol_2"}
    assert "difference" in choices["unidentifiable pol_1"] and "unidentifiable pol_2" in choices
    assert "three numbers" in choices["information"] and "DecoderSimple" in choices["twin"]


def test_control_is_deterministic_per_seed(tmp_path):
    first = registry.dataset("chamber_f3", cache_dir=tmp_path / "a", seed=3, **CONTROL).split("train")
    again = registry.dataset("chamber_f3", cache_dir=tmp_path / "b", seed=3, **CONTROL).split("train")
    other = registry.dataset("chamber_f3", cache_dir=tmp_path / "a", seed=4, **CONTROL).split("train")
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.factors, again.factors)
    assert not np.array_equal(first.factors, other.factors)


def test_control_environments_leave_the_observations_unchanged(tmp_path):
    plain = registry.dataset("chamber_f3", cache_dir=tmp_path, **CONTROL)
    pooled = registry.dataset("chamber_f3", cache_dir=tmp_path, environments=True, **CONTROL)
    assert plain.cache_key == pooled.cache_key
    n = len(plain.split("train"))
    np.testing.assert_array_equal(pooled.split("train").images[:n], plain.split("train").images)


def test_control_do_blue_moves_only_its_descendants(control):
    split = control.split("val")
    after = control.intervene(split.factors, split.noise, "blue", 250.0)
    np.testing.assert_array_equal(after[:, POL_1], split.factors[:, POL_1])
    assert after[:, GREEN].mean() > split.factors[:, GREEN].mean() + 30  # blue -> green with weight 0.89
    assert after[:, POL_2].mean() > split.factors[:, POL_2].mean() + 10  # blue -> pol_2, green -> pol_2
    assert np.any(after[:, RED] != split.factors[:, RED])  # through green


def test_chamber_modules_import_neither_torch_nor_pil(benchmark, tmp_path):
    code = (
        "import json, sys\n"
        "import crlbench.datasets.chamber, crlbench.datasets.chamber_f3\n"
        "at_import = 'PIL' in sys.modules\n"
        "from crlbench.core import registry\n"
        f"registry.dataset('chamber_f3', cache_dir={str(tmp_path)!r}, n_per_environment=50, size=8).split('train')\n"
        f"registry.dataset('chamber', cache_dir={str(tmp_path)!r}, root={str(benchmark[0])!r}).split('train')\n"
        "print(json.dumps({'pil_at_import': at_import, 'torch': 'torch' in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"pil_at_import": False, "torch": False}


def test_the_data_folder_is_not_in_the_cell_hash(tmp_path):
    from crlbench.suites.suite_config import load_suite
    from suite_fixture import write_suite

    def cell(root, size):
        path = write_suite(tmp_path, datasets=[{"name": "chamber", "params": {"root": str(root), "size": size}}],
                           models=[{"name": "beta_vae"}])
        return load_suite(path).cells()[0]

    here, elsewhere = cell(tmp_path / "a", 32), cell(tmp_path / "b", 32)
    assert here.hash == elsewhere.hash and "root" not in here.identity()["dataset"]["params"]
    assert cell(tmp_path / "a", 16).hash != here.hash  # what the data is stays in the hash
