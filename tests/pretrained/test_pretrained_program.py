"""Pretrained weights as programs: ``load_pretrained(NAME)`` rebuilds the program without any data
set, and ``save_pretrained`` / ``load_pretrained(FOLDER)`` do the same for a user's own model."""

import doctest
import json

import pytest
import torch
from pyro.nn import PyroModule

from pyro_vae import VAE
from pyro_vae.data import make_synthetic
from pyro_vae.models import MODELS, CategoricalVAE
from pyro_vae.pretrained import (
    PRETRAINED,
    DataDescription,
    PretrainedError,
    load_pretrained,
    load_pretrained_run,
    pretrained_record,
    report_dir,
    resolve_run,
    save_pretrained,
)
from pyro_vae.training import TrainConfig, build_run, load_program
from pyro_vae.training.build import build_program_for

SHIPPED = PRETRAINED.names()
TINY = dict(dataset="synthetic", z_dim=2, hidden=(8,), model="test-tiny-user")
SYNTHETIC = DataDescription(x_shape=(64,), num_classes=4, likelihood="bernoulli", image_shape=(1, 8, 8))


class TinyUserVAE(VAE):
    """A user's model: the VAE under another name, with a buffer (state that is no parameter)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("prior_temperature", torch.tensor(1.0))


@pytest.fixture
def user_model(monkeypatch):
    """``TinyUserVAE`` registered as ``test-tiny-user`` for the test."""
    monkeypatch.setattr(MODELS, "_entries", {**MODELS._entries, "test-tiny-user": TinyUserVAE})


def _tiny_program(config: TrainConfig) -> PyroModule:
    program = build_program_for(config, SYNTHETIC.spec, SYNTHETIC.likelihood)
    with torch.no_grad():  # weights no fresh build has
        for p in program.parameters():
            p.add_(torch.randn_like(p))
        program.prior_temperature.fill_(0.5)
    return program


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_program_loads_without_any_data_set(name, no_data, log_px_of):
    record = pretrained_record(name)
    rng = torch.get_rng_state()
    program = load_pretrained(name)
    assert isinstance(program, MODELS[record["config"]["model"]]) and isinstance(program, PyroModule)
    assert not program.training and all(p.dtype == torch.float32 for p in program.state_dict().values())
    assert torch.equal(torch.get_rng_state(), rng)  # building drew initial weights on a forked stream
    assert list(no_data.iterdir()) == []
    data = DataDescription.from_dict(record["data"])
    x = torch.zeros(2, *data.x_shape)
    batch = {"x": x, "y": torch.tensor([0, 1])} if "y" in program.data_keys else x
    assert torch.isfinite(torch.tensor(log_px_of(program, [batch])))


def test_a_pretrained_m1_is_a_program_source_without_data(no_data):
    program = load_program("pretrained:mnist-vae-z20-e10")
    assert type(program).__name__ == "VAE" and program.z_dim == 20


def test_save_then_load_a_user_model_is_the_same_program(tmp_path, user_model):
    config = TrainConfig(**TINY)
    program = _tiny_program(config)
    folder = save_pretrained(program, tmp_path / "mine", config, data=SYNTHETIC, description="my tiny model")
    loaded = load_pretrained(folder)
    assert type(loaded) is TinyUserVAE and not loaded.training
    assert loaded.state_dict().keys() == program.state_dict().keys()
    for (key, p), q in zip(program.state_dict().items(), loaded.state_dict().values()):
        assert q.dtype == torch.float32 and torch.equal(p, q), key
    record = pretrained_record(folder)
    assert TrainConfig.from_dict(record["config"]) == config and record["description"] == "my tiny model"
    assert DataDescription.from_dict(record["data"]) == SYNTHETIC and record["metrics"] == []
    assert set(record["versions"]) == {"torch", "pyro", "pyro_vae"}
    assert record["bytes"] == (folder / "pretrained.pt").stat().st_size


def test_a_tampered_saved_folder_is_refused(tmp_path, user_model):
    config = TrainConfig(**TINY)
    folder = save_pretrained(_tiny_program(config), tmp_path, config, data=SYNTHETIC)
    weights = folder / "pretrained.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match="pretrained weights .*pretrained.pt are damaged"):
        load_pretrained(folder)


def test_an_unregistered_model_is_one_line(tmp_path, user_model, monkeypatch):
    config = TrainConfig(**TINY)
    program = _tiny_program(config)
    folder = save_pretrained(program, tmp_path, config, data=SYNTHETIC)
    monkeypatch.setattr(MODELS, "_entries", {k: v for k, v in MODELS._entries.items() if k != "test-tiny-user"})
    with pytest.raises(PretrainedError) as raised:
        load_pretrained(folder)
    assert str(raised.value).startswith(
        f"pretrained record {folder / 'pretrained.json'} holds a program of the model 'test-tiny-user', which is not "
        "registered here; import the module that registers it first"
    )
    with pytest.raises(PretrainedError, match="the program's class TinyUserVAE is not registered"):
        save_pretrained(program, tmp_path / "again", data=SYNTHETIC)


def test_save_without_a_config_takes_the_registered_name_and_checks_the_defaults(tmp_path):
    vae = VAE((64,), z_dim=20, hidden=(500,))  # TrainConfig's defaults
    loaded = load_pretrained(save_pretrained(vae, tmp_path / "a", data=SYNTHETIC))
    assert all(torch.equal(p, q) for p, q in zip(vae.state_dict().values(), loaded.state_dict().values()))
    assert pretrained_record(tmp_path / "a")["config"]["model"] == "vae"
    with pytest.raises(
        PretrainedError, match="save_pretrained: .*does not fit the model its config describes.*shape of"
    ):
        save_pretrained(VAE((64,), z_dim=2, hidden=(500,)), tmp_path / "b", data=SYNTHETIC)
    assert not (tmp_path / "b").exists()


def test_save_without_a_config_rebuilds_a_model_with_its_own_defaults(tmp_path):
    program = CategoricalVAE((64,))  # its defaults: 512-256 ReLU networks, not the VAE's 500 tanh units
    loaded = load_pretrained(save_pretrained(program, tmp_path, data=SYNTHETIC))
    assert all(torch.equal(p, q) for p, q in zip(program.state_dict().values(), loaded.state_dict().values()))
    assert pretrained_record(tmp_path)["config"]["activation"] == "relu"


def test_save_a_run_keeps_its_config_data_and_curve(tmp_path):
    run = build_run(TrainConfig(dataset="synthetic", z_dim=2, hidden=(16,), epochs=1))
    run.metrics = [{"epoch": 1, "test_elbo": -40.0}]
    folder = save_pretrained(run, tmp_path)
    record = pretrained_record(folder)
    assert TrainConfig.from_dict(record["config"]) == run.config and record["metrics"] == run.metrics
    assert DataDescription.from_dict(record["data"]) == DataDescription.of(make_synthetic())
    again = load_pretrained_run(folder)
    assert again.metrics == run.metrics and again.config == run.config
    for p, q in zip(
        run.program.state_dict().values(), resolve_run(f"pretrained:{folder}").program.state_dict().values()
    ):
        assert torch.equal(p, q)
    assert report_dir(f"pretrained:{folder}") == folder


def test_a_data_dir_still_gives_the_run_with_a_deprecation_warning(tmp_path):
    run = build_run(TrainConfig(dataset="synthetic", z_dim=2, hidden=(16,), epochs=1))
    folder = save_pretrained(run, tmp_path)
    with pytest.warns(DeprecationWarning, match=r"call load_pretrained_run\(NAME, data_dir\) for the run"):
        again = load_pretrained(folder, tmp_path)
    assert again.config == run.config and again.dataset.name == "synthetic"


def test_a_folder_that_is_no_entry_is_one_line(tmp_path):
    with pytest.raises(PretrainedError, match=f"{tmp_path} holds no pretrained.json: it is not a folder written by"):
        load_pretrained(tmp_path)


def test_a_record_whose_data_entry_is_wrong_is_one_line(tmp_path, user_model):
    config = TrainConfig(**TINY)
    folder = save_pretrained(_tiny_program(config), tmp_path, config, data=SYNTHETIC)
    path = folder / "pretrained.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "data": {**record["data"], "image_shape": [1, 8, 9]}}))
    with pytest.raises(PretrainedError) as raised:
        load_pretrained(folder)
    assert str(raised.value) == (
        f"pretrained record {path}: its data entry is not valid: image_shape must be (channels, height, width) "
        "holding one datum of x_shape (64,), got (1, 8, 9)"
    )


@pytest.mark.parametrize("function", [load_pretrained, save_pretrained])
def test_docstring_examples_run(function, no_data):
    """The examples of the docstrings are executed, without any data set."""
    found = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder().find(function, function.__name__, globs={})
    assert [len(test.examples) for test in tests] and all(len(test.examples) >= 5 for test in tests)
    for test in tests:
        runner.run(test, out=found.append)
    assert runner.failures == 0, "".join(found)
