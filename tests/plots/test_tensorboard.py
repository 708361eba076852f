"""The TensorBoard callback: what it writes, read back from the event file."""

import pytest
from support import SMALL
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pyro_vae.cli import main
from pyro_vae.plots.tensorboard import TensorBoard, gradient_norm
from pyro_vae.training import TrainConfig, train


def _events(log_dir) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_metrics_rows_gradient_norm_and_image_grids_are_written(tmp_path):
    run = train(
        TrainConfig(**SMALL, epochs=2),
        tmp_path / "run",
        progress=False,
        callbacks=[TensorBoard(tmp_path / "tb", num_images=20)],
    )
    events = _events(tmp_path / "tb")
    scalars = events.Tags()["scalars"]
    assert {"train_elbo", "test_elbo", "lr", "grad_norm"} <= set(scalars)
    test_elbo = events.Scalars("test_elbo")
    assert [e.step for e in test_elbo] == [row["samples_seen"] for row in run.metrics]
    assert [e.value for e in test_elbo] == pytest.approx([row["test_elbo"] for row in run.metrics])
    assert gradient_norm(run.vae) == pytest.approx(events.Scalars("grad_norm")[-1].value)
    for tag in ("samples", "reconstructions"):
        images = events.Images(tag)
        assert [image.step for image in images] == [1, 2]
        assert images[0].width > 8 * 10 and images[0].encoded_image_string.startswith(b"\x89PNG")


def test_the_command_line_flag_writes_into_the_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--z-dim",
                "2",
                "--hidden",
                "8",
                "--epochs",
                "1",
                "-k",
                "2",
                "--run-dir",
                str(run_dir),
                "--no-progress",
                "--tensorboard",
            ]
        )
        == 0
    )
    assert "test_elbo" in _events(run_dir / "tensorboard").Tags()["scalars"]


def test_grids_need_whole_rows():
    with pytest.raises(ValueError, match="num_images must be a positive multiple of 10, got 15"):
        TensorBoard("unused", num_images=15)
