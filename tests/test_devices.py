"""The device path, on the CPU: ``device: auto`` and the CUDA branch of the device assignment (with
``torch.cuda`` monkeypatched, no GPU used), workers spread over GPUs, the ``precision`` key (hash,
errors, record) and bf16 autocast training every built-in model (fp16's gradient scaler too, on the
CPU, where suites refuse it). What needs a GPU is in ``benchmarks/gpu_check.py``."""

import dataclasses

import numpy as np
import pytest
import torch

from crlbench.core.errors import ConfigError
from crlbench.suites import executor
from crlbench.suites.runner import resolve_device, run_cell
from crlbench.suites.suite_config import load_suite
from crlbench.training import precision as precision_module
from crlbench.training.precision import Precision
from crlbench.training.train import Budget, build_model, optimisation_step, train
from model_fixtures import card_32, random_batch
from suite_fixture import write_suite
from test_suite_config import SMOKE_HASHES, SUITES

MODELS = ["beta_vae", "icm_vae", "causal_vae", "dear", "scm_vae", "ivae", "ilcm"]
SETTINGS = {"ivae": {"lr": 1e-3}}  # configs/models/ivae.yaml (the reference lr 0.01 diverges on images)


@pytest.fixture
def no_slot(monkeypatch):
    monkeypatch.delenv(executor.WORKER_SLOT, raising=False)


@pytest.fixture
def two_gpus(monkeypatch, no_slot):
    """torch.cuda as a machine with two GPUs shows it (nothing is ever put on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# --- devices ---------------------------------------------------------------------------------------------


def test_auto_is_the_cpu_without_cuda(monkeypatch, no_slot):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    monkeypatch.setenv(executor.WORKER_SLOT, "1")  # a worker on a machine without GPUs: still the CPU
    assert resolve_device("auto") == "cpu"


def test_cuda_without_a_gpu_is_a_config_error_that_says_so(monkeypatch, no_slot):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=rf"device '{device}': torch .* sees no CUDA device"):
            resolve_device(device)


def test_auto_is_cuda_and_a_worker_takes_its_gpu_in_turn(two_gpus, monkeypatch):
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"  # the launcher's own process
    taken = []
    for slot in range(5):
        monkeypatch.setenv(executor.WORKER_SLOT, str(slot))
        taken.append(resolve_device("auto"))
        assert resolve_device("cuda") == taken[-1]
        assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"  # named: as named
    assert taken == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]


def test_worker_slots_are_spread_over_the_gpus_and_a_replacement_takes_the_dead_worker_s():
    assert [executor.device_index(slot, 3) for slot in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert executor.device_index(4, 1) == 0 and executor.device_index(2, 0) == 0
    assert executor.free_slot([]) == 0 and executor.free_slot([0, 1]) == 2 and executor.free_slot([0, 2, 3]) == 1


def test_the_pool_hands_each_spawned_worker_its_slot(tmp_path):
    started = []

    class Process:
        def __init__(self, target, name, args):
            self.target, self.args = target, args

        def start(self):
            started.append(self.args[-1])

    class End:
        def close(self):
            pass

    class Context:
        def Pipe(self):
            return End(), End()

        def Process(self, target, name, args):
            return Process(target, name, args)

    pool = executor._Pool(3, 1, tmp_path, bar=None, records=[], on_result=lambda record: None)
    pool.context = Context()
    workers = [pool._start() for _ in range(3)]
    assert [w.slot for w in workers] == [0, 1, 2] and started == [0, 1, 2]
    assert workers[1].process.target is executor._worker_main
    pool.workers.remove(workers[1])  # died: its replacement runs on its GPU
    assert pool._start().slot == 1 and started[-1] == 1


def test_the_device_a_cell_ran_on_does_not_enter_its_hash(two_gpus, monkeypatch, tmp_path):
    cuda = load_suite(write_suite(tmp_path, device="cuda")).cells()
    monkeypatch.setenv(executor.WORKER_SLOT, "1")
    assert [c.hash for c in load_suite(write_suite(tmp_path, device="cuda")).cells()] == [c.hash for c in cuda]
    assert all(c.identity()["device"] == "cuda" for c in cuda)


# --- the precision key -----------------------------------------------------------------------------------


def test_the_default_precision_keeps_every_pinned_hash_and_another_makes_new_cells(tmp_path):
    smoke = load_suite(SUITES / "smoke.yaml")
    assert smoke.precision == "fp32" and all("precision" not in c.identity() for c in smoke.cells())
    assert {c.title: c.hash for c in smoke.cells()} == SMOKE_HASHES  # as before the key existed
    spelled = dataclasses.replace(smoke, precision="fp32")
    assert {c.title: c.hash for c in spelled.cells()} == SMOKE_HASHES
    bf16 = dataclasses.replace(smoke, precision="bf16").cells()
    assert all(c.identity()["precision"] == "bf16" and c.to_dict()["precision"] == "bf16" for c in bf16)
    assert not {c.hash for c in bf16} & set(SMOKE_HASHES.values())
    tiny = load_suite(write_suite(tmp_path)).cells()
    assert [c.hash for c in load_suite(write_suite(tmp_path, "fp32.yaml", precision="fp32")).cells()] == \
           [c.hash for c in tiny]


@pytest.mark.parametrize("value, device, message", [
    ("fp8", "cpu", r"key 'precision': must be one of fp32, bf16, fp16; got 'fp8'"),
    ("FP16", "cuda", r"key 'precision': must be one of fp32, bf16, fp16; got 'FP16'"),
    ("fp16", "cpu", r"key 'precision': 'fp16' is not available on device 'cpu': accepted there: fp32, bf16 "
                    r"\(fp16 needs device cuda\)"),
    ("bf16", "mps", r"key 'precision': 'bf16' is not available on device 'mps': accepted there: fp32"),
])
def test_a_precision_the_device_cannot_run_is_refused_naming_file_key_and_accepted_values(tmp_path, value, device,
                                                                                         message):
    with pytest.raises(ConfigError, match=r"bad\.yaml: " + message):
        load_suite(write_suite(tmp_path, "bad.yaml", precision=value, device=device))


def test_fp16_is_refused_for_a_model_that_steps_its_own_optimisers(tmp_path, tmp_path_factory):
    path = write_suite(tmp_path, "dear.yaml", precision="fp16", device="cuda",
                       models=[{"name": "beta_vae"}, {"name": "dear"}])
    with pytest.raises(ConfigError, match=r"dear\.yaml: key 'precision': 'fp16' is refused for model 'dear': it "
                                          r"steps its own optimisers \(manual_optimization\).*use bf16 or fp32"):
        load_suite(path)
    assert load_suite(write_suite(tmp_path, "beta.yaml", precision="fp16", device="cuda")).precision == "fp16"
    assert load_suite(write_suite(tmp_path, "auto.yaml", precision="fp16", device="auto")).precision == "fp16"
    dear = build_model("dear", card_32("pendulum", tmp_path_factory), seed=0)
    with pytest.raises(ConfigError, match=r"precision: 'fp16' is refused for model 'dear'"):
        Precision("fp16", "cuda", dear)  # the trainer's own check (device auto resolved at run time)
    with pytest.raises(ConfigError, match=r"precision: 'fp16' is not available on device 'cpu'"):
        Precision("fp16", "cpu")


# --- training under autocast -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 32x32 card and 24 random images with factors: a few steps of every model, no dataset rendered."""
    card = card_32("pendulum", tmp_path_factory)
    rng = np.random.default_rng(0)
    return card, rng.integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8), rng.normal(size=(24, len(card.factors)))


def short_run(tiny, name, precision):
    """Three steps of ``name`` at ``precision``; the model, its history and the dtypes its first layer gave."""
    card, images, factors = tiny
    model = build_model(name, card, seed=0, **SETTINGS.get(name, {}))
    after = images[::-1].copy() if model.needs_pairs else None  # pairs for ILCM
    layer = next(module for module in model.modules() if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)))
    dtypes = set()
    # the training steps' dtypes (post-hoc inference at the end of training, ILCM's graph, runs in eval mode in fp32)
    layer.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype) if module.training else None)
    history = train(model, images, factors, budget=Budget(steps=3, batch_size=8), seed=0, progress=False,
                    precision=precision, images_after=after)
    return model, history, dtypes


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_under_bf16_autocast_on_the_cpu_and_the_same_seed_gives_the_same_weights(tiny, name):
    model, history, dtypes = short_run(tiny, name, "bf16")
    assert dtypes == {torch.bfloat16}  # the forward pass ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert history.steps == 3 and all(np.isfinite(v) for record in history.epochs for v in record.values())
    again, history_again, _ = short_run(tiny, name, "bf16")
    assert history_again.epochs == history.epochs
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    fp32, _, fp32_dtypes = short_run(tiny, name, "fp32")
    assert fp32_dtypes == {torch.float32}
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fp32.state_dict().values()))


def test_fp16_scales_the_loss_through_a_grad_scaler(monkeypatch, tmp_path_factory):
    """The fp16 path a GPU takes, on the CPU (torch has fp16 autocast and GradScaler there; suites refuse it)."""
    monkeypatch.setitem(precision_module.ACCEPTED, "cpu", precision_module.PRECISIONS)
    card = card_32("pendulum", tmp_path_factory)
    model = build_model("beta_vae", card, seed=0)
    mixed = Precision("fp16", "cpu", model)
    optimizers = model.optimizers()
    before = [p.detach().clone() for p in model.parameters()]
    for step in range(8):  # the scale starts at 2^16: the first steps overflow, are skipped and halve it
        losses = optimisation_step(model, optimizers, random_batch(8), step, mixed)
        assert np.isfinite(losses["loss"])
    assert 0 < mixed.scaler.get_scale() < 2.0**16
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_a_bf16_cell_records_its_precision_and_device(tmp_path, monkeypatch, no_slot):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = write_suite(tmp_path, device="auto", precision="bf16", models=[{"name": "beta_vae"}])
    (cell,) = load_suite(path).cells()
    record = run_cell(cell, tmp_path / "work")
    assert record["status"] == "ok", record["error"]
    assert record["device"] == "cpu" and record["cell"]["precision"] == "bf16" and record["cell"]["device"] == "auto"
    assert record["cell"]["identity"]["precision"] == "bf16"
    fp16 = load_suite(write_suite(tmp_path, "fp16.yaml", device="auto", precision="fp16",
                                  models=[{"name": "beta_vae"}])).cells()[0]
    record = run_cell(fp16, tmp_path / "work")  # auto resolved to the CPU, which has no fp16
    assert record["status"] == "failed" and record["error"]["type"] == "ConfigError"
    assert "'fp16' is not available on device 'cpu'" in record["error"]["message"]


def test_a_tuning_worker_takes_its_gpu_by_its_index(monkeypatch):
    from crlbench.tuning import workers

    monkeypatch.setenv(executor.WORKER_SLOT, "0")  # restored (removed) after the test, which sets it
    seen = []
    monkeypatch.setattr(workers, "_optimize", lambda config, settings, tickets, worker: seen.append(executor.worker_slot()))
    workers._worker(None, None, 3, 20)  # a spawned worker's entry point (the launcher's own trials are worker 0)
    assert seen == [3]
