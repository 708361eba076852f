"""``on_evaluate``: the final evaluation's report reaches the callbacks (``evaluate_run(..., callbacks=)``)."""

import pytest
from support import SMALL

from pyro_vae.training import TrainConfig, train
from pyro_vae.training.callbacks import CallbackError
from pyro_vae.training.report import evaluate_run


class Reports:
    """A callback with the evaluation hook alone (a valid callback for ``train`` too)."""

    def __init__(self) -> None:
        self.reports = []

    def on_evaluate(self, run, report):
        self.reports.append((run, report))


class Broken:
    def on_evaluate(self, run, report):
        raise RuntimeError("boom\nsecond line")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(TrainConfig(**SMALL, epochs=1, num_train=100), tmp_path_factory.mktemp("run"), progress=False)


def test_the_callbacks_get_the_report_that_is_returned(run):
    callback = Reports()
    report = evaluate_run(run, 3, num_test=20, callbacks=[callback])
    assert callback.reports == [(run, report)]
    assert report["num_samples"] == 3 and report["epoch"] == 1


def test_a_failing_evaluation_hook_is_one_line_naming_it(run):
    with pytest.raises(CallbackError) as caught:
        evaluate_run(run, 3, num_test=20, callbacks=[Reports(), Broken()])
    assert str(caught.value) == (
        "callback Broken.on_evaluate failed at epoch 1 (RuntimeError: boom); training stopped with every epoch "
        "saved (only the evaluation is lost): fix the callback and resume"
    )


def test_a_callback_of_the_evaluation_alone_is_accepted_by_train(tmp_path):
    train(TrainConfig(**SMALL, epochs=1, num_train=100), tmp_path, progress=False, callbacks=[Reports()])
