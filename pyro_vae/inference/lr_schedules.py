"""Learning-rate schedules by name: the factor that multiplies ``config.lr`` in each epoch.

A schedule is a function of the number of finished epochs (0 in the first
epoch), the ``lr_lambda`` of :class:`torch.optim.lr_scheduler.LambdaLR`;
SVI uses it through Pyro's wrapper :class:`pyro.optim.LambdaLR`, the baselines
through torch's. The trainer steps the schedulers once per epoch and saves
their state with the optimizers', so a resumed run keeps its place.
"""

from __future__ import annotations

from typing import Callable

IWAE_STAGES = 8  # Burda et al. (2016): stages i = 0..7 of 3**i epochs, 3,280 epochs in all


def constant(finished_epochs: int) -> float:
    """1 throughout."""
    return 1.0


def iwae(finished_epochs: int) -> float:
    """Burda et al. (2016), Section 5: ``10 ** (-i / 7)`` during stage i, which lasts
    ``3 ** i`` epochs, i = 0..7; after epoch 3,280 the last stage's factor 0.1 stays."""
    stage, stage_end = 0, 1
    while finished_epochs >= stage_end and stage < IWAE_STAGES - 1:
        stage += 1
        stage_end += 3**stage
    return 10 ** (-stage / 7)


LR_SCHEDULES: dict[str, Callable[[int], float]] = {"constant": constant, "iwae": iwae}
