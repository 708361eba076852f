"""Training on a user's own data: train(..., data=...) and pyro-vae train --data FILE; the
checkpoint's data fingerprint refuses a resume (or a reload) on other data; grey data are
evaluated on grey test images."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pyro_vae.training.report as report_module
from pyro_vae import TrainConfig, load_run, train
from pyro_vae.cli import main
from pyro_vae.data import as_dataset
from pyro_vae.training.checkpoint import DATA_FINGERPRINT, CheckpointError, load_checkpoint

CONFIG = TrainConfig(dataset="user", z_dim=2, hidden=(8,), epochs=1, batch_size=20)
GREY = torch.rand(200, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1  # strictly inside (0, 1)


@pytest.mark.parametrize(
    "data", [GREY, DataLoader(TensorDataset(GREY, torch.arange(200) % 2), batch_size=50)], ids=["tensor", "loader"]
)
def test_train_on_a_tensor_or_a_dataloader_records_the_fingerprint(tmp_path, data):
    run = train(CONFIG, tmp_path, data=data, progress=False)
    assert run.dataset.name == "user" and run.dataset.x_shape == (64,) and len(run.dataset.test) == 20
    assert load_checkpoint(tmp_path / "checkpoint.pt")[DATA_FINGERPRINT] == as_dataset(data).fingerprint
    assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "user"
    reloaded = load_run(tmp_path, data=data)
    trained, again = run.program.state_dict(), reloaded.program.state_dict()
    assert trained.keys() == again.keys() and all(torch.equal(trained[k], again[k]) for k in trained)


def test_resume_or_reload_on_other_data_is_refused(tmp_path):
    train(CONFIG, tmp_path, data=GREY, progress=False)
    other = GREY.flip(0)
    longer = dataclasses.replace(CONFIG, epochs=2)
    with pytest.raises(CheckpointError, match="fingerprint [0-9a-f]{64}, and the data given have the fingerprint"):
        train(longer, tmp_path, data=other, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="trained on the data of fingerprint"):
        load_run(tmp_path, data=other)
    with pytest.raises(ValueError, match="'user' is a user's own data.*load_run\\(run_dir, data=...\\)"):
        load_run(tmp_path)
    assert [row["epoch"] for row in train(longer, tmp_path, data=GREY, resume=True, progress=False).metrics] == [1, 2]
    with pytest.raises(ValueError, match="give TrainConfig\\(dataset='user'"):
        train(dataclasses.replace(CONFIG, dataset="synthetic"), tmp_path / "b", data=GREY, progress=False)


def test_grey_data_are_evaluated_on_grey_test_images(tmp_path, monkeypatch):
    seen = []
    evaluate = report_module.evaluate

    def spy(program, batches, *args, **kwargs):
        batches = list(batches)
        seen.extend(batch["x"] for batch in batches)
        return evaluate(program, batches, *args, **kwargs)

    monkeypatch.setattr(report_module, "evaluate", spy)
    run = train(CONFIG, tmp_path, data=GREY, progress=False)
    report_module.evaluate_run(run, num_samples=2)
    x = torch.cat(seen)
    assert len(x) == 20 and ((x > 0) & (x < 1)).all()  # not binarized at load time nor in the batches


@pytest.mark.slow
def test_cli_trains_on_an_npz_file_and_an_image_folder(tmp_path):
    from PIL import Image

    pixels = (GREY * 255).round().to(torch.uint8).numpy()
    np.savez(tmp_path / "data.npz", x=pixels[:180], test=pixels[180:])
    for i, image in enumerate(pixels):
        folder = tmp_path / "images" / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{i:03d}.png")
    flags = ["--z-dim", "2", "--hidden", "8", "--epochs", "1", "--batch-size", "20", "--no-progress", "-k", "2"]
    for source in ("data.npz", "images"):
        run_dir = tmp_path / f"run-{source}"
        assert main(["train", "--data", str(tmp_path / source), "--run-dir", str(run_dir), *flags]) == 0
        report = json.loads(next(run_dir.glob("eval-*.json")).read_text())
        assert report["num_test"] == 20 and np.isfinite(report["test_log_px"])
    assert main(["train", "--data", str(tmp_path / "data.npz"), "--dataset", "mnist", *flags]) == 2
    resumed = ["train", "--resume", "--run-dir", str(tmp_path / "run-images"), "--epochs", "2", "--no-progress"]
    assert main([*resumed, "--data", str(tmp_path / "data.npz")]) == 1  # other data: refused
    assert main([*resumed, "--data", str(tmp_path / "images"), "-k", "2"]) == 0
    # the commands after training take the same --data; without it the run's data are named as missing
    images = ["--data", str(tmp_path / "images")]
    folder = str(tmp_path / "run-images")
    assert main(["evaluate", folder, "-k", "2", *images, "--no-progress"]) == 0
    assert main(["plot", folder, "--figures", "curves", *images, "--no-progress"]) == 0
    assert (tmp_path / "run-images" / "figures" / "curves.png").is_file()
    assert main(["evaluate", folder, "-k", "2", "--no-progress", "--data", str(tmp_path / "data.npz")]) == 1
    assert main(["evaluate", folder, "-k", "2", "--no-progress"]) in (1, 2)


def test_a_validation_set_given_with_the_data_is_evaluated_in_every_row(tmp_path):
    data = {"train": GREY[:160], "test": GREY[160:180], "validation": GREY[180:]}
    config = TrainConfig(dataset="user", z_dim=2, hidden=(8,), epochs=2, batch_size=20)
    run = train(config, tmp_path / "run", data=data, progress=False)
    assert torch.equal(run.dataset.validation, GREY[180:].flatten(1)) and all("val_elbo" in r for r in run.metrics)
    with pytest.raises(ValueError, match="the data hold a validation set of 20 points and validation_fraction=0.1"):
        train(dataclasses.replace(config, validation_fraction=0.1), tmp_path / "both", data=data, progress=False)
