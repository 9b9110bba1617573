"""The environments mode: the observations pooled with one interventional environment per factor, drawn as
buchholz_1 draws them in rank-Gaussian units (crlbench.datasets.environments), in support, seeded and cached,
fed to a method that trains on them, and a not-applicable cell on a dataset without them."""

import numpy as np
import pytest
from scipy import special, stats

from crlbench.core import registry
from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.datasets.environments import MEAN_RANGE, VARIANCE_RANGE
from crlbench.suites.results import cell_dir, read_result
from crlbench.suites.suite import run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import plugin_path, write_suite  # noqa: F401 (plugin_path: a fixture)

SMALL = {"pendulum": {"size": 16}, "flow": {"size": 16},
         "causal_circuit": {"size": 16, "n_train": 3000, "n_val": 20, "n_test": 20}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("environments")


def rank_gaussian(marginal, values):
    """Where ``values`` stand in rank-Gaussian units of ``marginal``: Phi^-1 of the mid-rank of each value."""
    marginal = np.sort(marginal)
    below = np.searchsorted(marginal, values, side="left")
    upto = np.searchsorted(marginal, values, side="right")
    return special.ndtri((below + upto) / (2 * len(marginal)))


@pytest.mark.parametrize("name", ["pendulum", "flow", "causal_circuit"])
@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_environments_follow_the_stated_distributions_and_stay_in_support(name, kind, cache):
    dataset = registry.dataset(name, cache_dir=cache, environments=True, intervention=kind, **SMALL[name])
    observations = registry.dataset(name, cache_dir=cache, **SMALL[name]).split("train")
    pooled = dataset.split("train")
    n, count = observations.factors.shape
    environment, targets = pooled.extras["environment"], pooled.extras["environment_targets"]
    assert len(pooled) == (count + 1) * n == dataset.card.split_sizes["train"]
    assert np.array_equal(np.bincount(environment), [n] * (count + 1))
    assert np.array_equal(targets, environment - 1) and set(pooled.extras) == {"environment", "environment_targets"}
    assert np.array_equal(pooled.factors[:n], observations.factors)  # the observations come first, untouched
    assert np.array_equal(pooled.images[:n], observations.images)
    for k, factor in enumerate(dataset.card.factors):
        factor.check(pooled.factors[:, k], f"{name} environments")  # every value in the factor's support
    plan = dataset.environment_plan
    assert all(MEAN_RANGE[0] <= abs(mean) <= MEAN_RANGE[1] for mean in plan["means"])
    assert all(VARIANCE_RANGE[0] <= variance <= VARIANCE_RANGE[1] for variance in plan["variances"])
    for k in range(count):
        rows = environment == k + 1
        if plan["kinds"][k] == "hard":  # the target's own values, in rank-Gaussian units, follow N(mu, sigma^2)
            z = rank_gaussian(observations.factors[:, k], pooled.factors[rows, k])
        else:  # the target's noise does
            z = rank_gaussian(observations.noise[:, k], pooled.noise[rows, k])
        spread = np.sqrt(plan["variances"][k])
        # atoms and coarse grids (Flow's 9 holes) blur the ranks: a loose tolerance, still far from N(0, 1)
        assert abs(np.median(z) - plan["means"][k]) < 0.35 * spread, (name, k)
        assert np.sign(np.median(z)) == np.sign(plan["means"][k])
        untouched = [j for j in range(count) if j != k and j not in dataset.card.descendants(k)]
        for j in untouched:  # non-descendants keep their observational distribution (fresh noise, same law)
            assert stats.ks_2samp(pooled.factors[rows, j], observations.factors[:, j]).pvalue > 1e-3, (name, k, j)
    assert np.array_equal(pooled.images[n:n + 8], dataset.render(pooled.factors[n:n + 8], pooled.noise[n:n + 8]))
    assert "environments" in dataset.card.choices


def test_soft_interventions_go_where_the_mechanism_has_noise(cache):
    soft = {name: registry.dataset(name, cache_dir=cache, environments=True, intervention="soft", **SMALL[name])
            for name in SMALL}
    assert soft["pendulum"].environment_plan["kinds"] == ["soft", "soft", "hard", "hard"]  # shadows are deterministic
    assert soft["flow"].environment_plan["kinds"] == ["soft", "soft", "soft", "hard"]  # the water flow too
    assert soft["causal_circuit"].environment_plan["kinds"] == ["soft"] * 4
    hard = registry.dataset("causal_circuit", cache_dir=cache, environments=True, **SMALL["causal_circuit"])
    assert hard.environment_plan["kinds"] == ["hard"] * 4


def test_environments_are_seeded_cached_and_share_the_observations_cache(tmp_path):
    first = registry.dataset("pendulum", cache_dir=tmp_path / "a", size=16, environments=True).split("train")
    again = registry.dataset("pendulum", cache_dir=tmp_path / "b", size=16, environments=True).split("train")
    assert np.array_equal(first.images, again.images) and np.array_equal(first.factors, again.factors)
    other = registry.dataset("pendulum", cache_dir=tmp_path / "a", size=16, environments=True, seed=1)
    assert not np.array_equal(other.split("train").factors, first.factors)  # the seed draws other environments
    plain = registry.dataset("pendulum", cache_dir=tmp_path / "a", size=16)
    pooled = registry.dataset("pendulum", cache_dir=tmp_path / "a", size=16, environments=True)
    assert plain.cache_key == pooled.cache_key != other.cache_key  # one observational cache per seed, whatever the mode
    assert len(list((tmp_path / "a").glob("*.npz"))) == 4  # per seed: the observations and the environments
    assert plain.card.split_sizes["train"] * 5 == pooled.card.split_sizes["train"]
    test = pooled.split("test")
    assert "environment" not in test.extras and np.array_equal(test.images, plain.split("test").images)


def test_pairs_and_environments_do_not_mix_and_bad_values_are_named(tmp_path):
    dataset = registry.dataset("pendulum", cache_dir=tmp_path, size=16, environments=True)
    with pytest.raises(NotApplicable, match="pairs and environments are two data modes"):
        dataset.pairs("train")
    with pytest.raises(ConfigError, match="dataset 'flow': parameter 'intervention' must be one of hard, soft; got 'shift'"):
        registry.dataset("flow", cache_dir=tmp_path, intervention="shift")


def test_a_method_on_environments_trains_on_them_and_is_not_applicable_without_them(tmp_path, plugin_path):
    import crl_plugin_environments

    crl_plugin_environments.SEEN_ENVIRONMENTS.clear()
    records, workdir = {}, tmp_path / "work"
    for environments in (True, False):  # a suite lists a dataset once: one suite per mode, one workdir
        path = write_suite(tmp_path, f"{environments}.yaml", plugins=["crl_plugin_models", "crl_plugin_environments"],
                           datasets=[{"name": "pendulum", "params": {"size": 16, "environments": environments}}],
                           models=[{"name": "environment_ae"}, {"name": "linear_ae"}], metrics=["mcc@pearson"])
        config = load_suite(path)
        summary = run_suite(config, workdir, progress=False)
        assert (summary.ok, summary.not_applicable, summary.failed) == ((2, 0, 0) if environments else (1, 1, 0))
        records.update({(environments, c.model): read_result(cell_dir(workdir, c.hash)) for c in config.cells()})
    skipped = records[(False, "environment_ae")]
    assert skipped["status"] == "not_applicable" and "environments: true" in skipped["error"]["message"]
    trained = records[(True, "environment_ae")]
    assert trained["status"] == "ok" and trained["given"] == ["environments"]
    seen = np.concatenate([batch.numpy() for batch in crl_plugin_environments.SEEN_ENVIRONMENTS])
    assert set(np.unique(seen)) == {0, 1, 2, 3, 4}  # pooled rows of every environment
    assert records[(True, "linear_ae")]["status"] == "ok"  # a method that ignores environments trains on the pool


def test_only_cells_in_the_environments_mode_change_their_hash(tmp_path, plugin_path):
    def cell(params):
        path = write_suite(tmp_path, plugins=["crl_plugin_models", "crl_plugin_environments"],
                           datasets=[{"name": "pendulum", "params": {"size": 16, **params}}], models=[{"name": "linear_ae"}])
        return load_suite(path).cells()[0]

    pooled, spelled_out, plain = cell({"environments": True}), cell({"environments": False, "intervention": "hard"}), cell({})
    assert pooled.identity()["environments"] == "1" and pooled.identity()["dataset"]["params"]["environments"] is True
    assert "environments" not in plain.identity() and "environments" not in plain.identity()["dataset"]["params"]
    assert spelled_out.hash == plain.hash != pooled.hash  # the legacy values leave the hash as it was


def test_a_cell_records_the_assumptions_its_data_break(tmp_path):
    from crlbench.suites.runner import broken_assumptions

    def broken(name, **params):
        dataset = registry.dataset(name, cache_dir=tmp_path, size=16, environments=True, **params)
        return set(broken_assumptions(registry.model("contrastive_crl", dataset.card), dataset))

    assert broken("pendulum") == {"linear_scm"}  # one hard intervention per factor, but a nonlinear SCM
    assert broken("causal_circuit", n_train=50, n_val=5, n_test=5, intervention="soft") == {
        "linear_scm", "one_intervention_per_latent"}  # soft: the target keeps its parents
    assert broken("chamber_f3", n_per_environment=50) == set()  # buchholz_1: linear Gaussian, hard interventions
    plain = registry.dataset("chamber_f3", cache_dir=tmp_path, size=16, n_per_environment=50)
    assert set(broken_assumptions(registry.model("contrastive_crl", plain.card), plain)) == {"one_intervention_per_latent"}
    assert broken_assumptions(registry.model("beta_vae", plain.card), plain) == {}  # a method that assumes nothing
