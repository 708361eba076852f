"""The TensorBoard callback: what it writes, read back from the event files."""

import json
from dataclasses import asdict

import pytest
from support import SMALL
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from pyro_vae.cli import main
from pyro_vae.plots.tensorboard import TensorBoard, gradient_norm, hparams
from pyro_vae.training import TrainConfig, train
from pyro_vae.training.report import evaluate_run


def _events(log_dir) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def _text(events: EventAccumulator, tag: str) -> list[dict]:
    """The JSON blocks written as text ``tag``, one per event."""
    blocks = [e.tensor_proto.string_val[0].decode() for e in events.Tensors(f"{tag}/text_summary")]
    return [json.loads(block.removeprefix("```json\n").removesuffix("\n```")) for block in blocks]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny run of 2 epochs with the callback, then its final evaluation with the same callback."""
    tmp = tmp_path_factory.mktemp("tensorboard")
    callback = TensorBoard(tmp / "tb", num_images=20)
    run = train(TrainConfig(**SMALL, epochs=2, num_train=200), tmp / "run", progress=False, callbacks=[callback])
    report = evaluate_run(run, 5, num_test=50, callbacks=[callback])
    return run, report, _events(tmp / "tb")


def test_scalars_and_images_share_the_samples_seen_axis(evaluated):
    run, _, events = evaluated
    assert {"train_elbo", "test_elbo", "lr", "grad_norm"} <= set(events.Tags()["scalars"])
    test_elbo = events.Scalars("test_elbo")
    assert [e.step for e in test_elbo] == [row["samples_seen"] for row in run.metrics] == [200, 400]
    assert [e.value for e in test_elbo] == pytest.approx([row["test_elbo"] for row in run.metrics])
    assert gradient_norm(run.program) == pytest.approx(events.Scalars("grad_norm")[-1].value)
    for tag in ("samples", "reconstructions"):
        images = events.Images(tag)
        assert [image.step for image in images] == [200, 400]  # each epoch's end, on the scalars' axis
        assert images[0].width > 8 * 10 and images[0].encoded_image_string.startswith(b"\x89PNG")


def test_the_config_is_written_once_as_text_and_as_hyperparameters(evaluated):
    run, _, events = evaluated
    assert _text(events, "config") == [json.loads(json.dumps(asdict(run.config)))]
    content = events.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    written = metadata.parse_session_start_info_plugin_data(content).hparams
    assert set(written) == set(hparams(run.config))
    assert written["lr"].number_value == pytest.approx(run.config.lr)
    assert written["dataset"].string_value == "synthetic"
    assert written["hidden"].string_value == "[16]"
    assert len(events.Tensors(metadata.SESSION_START_INFO_TAG)) == 1


def test_the_final_evaluation_is_logged_at_the_runs_last_step(evaluated):
    run, report, events = evaluated
    for name in ("test_log_px", "test_elbo"):
        [scalar] = events.Scalars(f"evaluation/{name}")
        assert (scalar.step, scalar.value) == (400, pytest.approx(report[name]))
    assert events.Scalars("test_elbo")[-1].value == pytest.approx(run.metrics[-1]["test_elbo"])  # the final ELBO
    assert _text(events, "evaluation") == [report]


def test_dict_and_tuple_fields_become_flat_hyperparameters():
    config = TrainConfig(**SMALL, optimizer_options={"betas": (0.8, 0.9)}, model_options={})
    flat = hparams(config)
    assert flat["optimizer_options.betas"] == "[0.8, 0.9]" and "model_options" not in flat
    assert flat["num_train"] == "null" and flat["batch_size"] == 100 and flat["likelihood"] == "null"


def test_images_follow_the_rows_of_a_log_schedule(tmp_path):
    # 2 steps of 100 a epoch, 2 rows a decade: rows at 400 and 600 samples (epochs 2 and 3), none in epoch 1
    config = TrainConfig(**SMALL, epochs=3, num_train=200, evals_per_decade=4)
    run = train(config, tmp_path / "run", progress=False, callbacks=[TensorBoard(tmp_path / "tb", num_images=10)])
    events = _events(tmp_path / "tb")
    steps = [row["samples_seen"] for row in run.metrics]
    assert steps == [400, 600]
    assert [e.step for e in events.Scalars("test_elbo")] == steps
    assert [image.step for image in events.Images("samples")] == steps


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
