"""Training runs: configuration, building runs, the loops, metrics, checkpoints, run folders.

Modules: :mod:`~pyro_vae.training.config` (``TrainConfig``),
:mod:`~pyro_vae.training.build` (the run of data points and the program a config describes),
:mod:`~pyro_vae.training.kinds` (the kinds of run, building and reloading a run of any kind),
:mod:`~pyro_vae.training.loop` (``train``: the one training loop, the entry point of
every run), :mod:`~pyro_vae.training.graph_run` (runs of graph models),
:mod:`~pyro_vae.training.metrics` (metrics rows and when they are written),
:mod:`~pyro_vae.training.folder` (the run-folder API both loops use),
:mod:`~pyro_vae.training.callbacks` (a user's hooks at each metrics row, epoch and run end).
"""

from pyro_vae.training.build import PROGRAM_SOURCES, Run, build_program, load_program
from pyro_vae.training.callbacks import Callback, EarlyStopping
from pyro_vae.training.config import PRESETS, TrainConfig
from pyro_vae.training.folder import TrainingDiverged
from pyro_vae.training.graph_run import GraphRun, evaluate_graph_run
from pyro_vae.training.kinds import RUN_KINDS, RunKind, build_run, load_run
from pyro_vae.training.loop import train, train_or_resume
from pyro_vae.training.metrics import EvalSchedule

__all__ = [
    "PRESETS",
    "PROGRAM_SOURCES",
    "RUN_KINDS",
    "Callback",
    "EarlyStopping",
    "EvalSchedule",
    "GraphRun",
    "Run",
    "RunKind",
    "TrainConfig",
    "TrainingDiverged",
    "build_program",
    "build_run",
    "evaluate_graph_run",
    "load_program",
    "load_run",
    "train",
    "train_or_resume",
]
