"""The classifiers of the probe (:mod:`pyro_vae.experiments.probe`): each predicts the class of
every test code from a few labelled training codes, registered by name in :data:`CLASSIFIERS`.

Inductive ones fit on the labelled codes alone (``logistic``, ``knn``, ``svm``); transductive
ones, as Kingma et al. (2014)'s TSVM, also use the unlabelled codes, through the
nearest-neighbour graph of all codes (``spreading``, ``spreading-svm``). No test label is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, kneighbors_graph
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from pyro_vae.registry import Registry


@dataclass
class Codes:
    """The codes of a data set's training and test images, with the training labels."""

    train: np.ndarray  # (N_train, D)
    test: np.ndarray  # (N_test, D)
    train_labels: np.ndarray  # (N_train,)
    num_classes: int

    @cached_property
    def graph(self) -> sparse.csr_matrix:
        """S = D^-1/2 W D^-1/2 over the training then the test codes, W the symmetrized
        10-nearest-neighbour graph (Euclidean, each dimension standardized over all the codes),
        D its degrees; computed once per probe.

        Standardized because a VAE's code mixes active dimensions (means spread over about one
        unit) with collapsed ones (about 0.01), whose small differences still tell digits apart:
        on the 50-dimensional code of ``pretrained:mnist-vae-z50-e3280`` (14 active dimensions),
        label spreading's test error with 600 labels fell from 4.9 to 3.9 %; on the 20 active
        dimensions of ``mnist-vae-z20-e10`` it rose from 4.5 to 4.7 % (docs/results-log.md, "The latent code as features").
        """
        points = StandardScaler().fit_transform(np.concatenate([self.train, self.test]))
        w = kneighbors_graph(points, n_neighbors=10, include_self=False)
        w = w.maximum(w.T)
        scale = sparse.diags(1.0 / np.sqrt(np.asarray(w.sum(1)).ravel()))
        return (scale @ w @ scale).tocsr()


Classifier = Callable[[Codes, np.ndarray], np.ndarray]
"""Predicts a class for every test code from the training codes ``index`` and their labels."""

#: The classifiers the probe fits on the training codes, by name.
CLASSIFIERS: Registry[Classifier] = Registry("probe classifier")


@CLASSIFIERS.register("logistic")
def logistic(codes: Codes, index: np.ndarray) -> np.ndarray:
    """multinomial logistic regression on the raw codes, L2 penalty C = 1 (scikit-learn)"""
    model = LogisticRegression(C=1.0, max_iter=2000).fit(codes.train[index], codes.train_labels[index])
    return model.predict(codes.test)


@CLASSIFIERS.register("knn")
def knn(codes: Codes, index: np.ndarray) -> np.ndarray:
    """k = 5 nearest labelled codes (Euclidean; k = the labels per class when fewer), majority vote (scikit-learn)"""
    model = KNeighborsClassifier(n_neighbors=min(5, len(index) // codes.num_classes))
    return model.fit(codes.train[index], codes.train_labels[index]).predict(codes.test)


@CLASSIFIERS.register("svm")
def svm(codes: Codes, index: np.ndarray) -> np.ndarray:
    """support vector machine, RBF kernel, on the labelled codes standardized (scikit-learn's defaults: C = 1, gamma 'scale'); the inductive counterpart of TSVM"""
    scaler = StandardScaler().fit(codes.train[index])
    model = SVC().fit(scaler.transform(codes.train[index]), codes.train_labels[index])
    return model.predict(scaler.transform(codes.test))


def spread(codes: Codes, index: np.ndarray, alpha: float = 0.99, steps: int = 200) -> np.ndarray:
    """Label spreading (Zhou et al. 2004): ``steps`` times F <- alpha S F + (1 - alpha) Y, from F = Y
    the one-hot labels of the labelled codes ``index`` (zero rows elsewhere), S the normalized graph
    :attr:`Codes.graph` of all training then test codes; returns F, one row per code."""
    y = np.zeros((codes.graph.shape[0], codes.num_classes))
    y[index, codes.train_labels[index]] = 1.0
    f = y
    for _ in range(steps):
        f = alpha * (codes.graph @ f) + (1 - alpha) * y
    return f


@CLASSIFIERS.register("spreading")
def label_spreading(codes: Codes, index: np.ndarray) -> np.ndarray:
    """label spreading over the 10-NN graph of all training and test codes (Zhou et al. 2004), transductive as TSVM

    The class of a test code is the argmax of its row of :func:`spread`'s F. No test label is
    used; the unlabelled codes shape the graph.
    """
    return spread(codes, index)[len(codes.train) :].argmax(1)


#: The RBF SVM's candidates of :func:`spreading_svm`: C, and gamma times the code's dimension
#: (1 is scikit-learn's gamma "scale" on standardized codes).
SVM_GRID = {"C": [1.0, 3.0, 10.0], "gamma_times_dim": [0.5, 1.0, 2.5]}


@CLASSIFIERS.register("spreading-svm")
def spreading_svm(codes: Codes, index: np.ndarray, pseudo: int = 20000, seed: int = 0) -> np.ndarray:
    """an RBF SVM on the labelled codes and 20,000 unlabelled ones labelled by label spreading, transductive as TSVM

    Self-training in one round: :func:`spread` labels every unlabelled training code; an SVM
    (RBF kernel, codes standardized over the codes it is fit on) is fit on the labelled codes plus ``pseudo`` of the
    unlabelled ones drawn at random (``seed``) with their spread labels, and classifies the test
    codes. Its C and gamma are chosen among :data:`SVM_GRID` by stratified 5-fold cross-validation
    on the labelled codes alone (fewer folds when a class has fewer than 5 labels; scikit-learn's
    defaults when one has a single label). No test label is used.
    """
    labels = codes.train_labels[index]
    unlabelled = np.setdiff1d(np.arange(len(codes.train)), index)
    chosen = np.random.default_rng(seed).choice(unlabelled, min(pseudo, len(unlabelled)), replace=False)
    spread_labels = spread(codes, index)[chosen].argmax(1)
    fitted = np.concatenate([codes.train[index], codes.train[chosen]])  # the labelled rows first
    scaler = StandardScaler().fit(fitted)
    x = scaler.transform(fitted)
    smallest = int(np.unique(labels, return_counts=True)[1].min())
    best = {}  # scikit-learn's defaults when a class has a single label to cross-validate on
    if smallest >= 2:
        folds = StratifiedKFold(min(5, smallest), shuffle=True, random_state=seed)
        grid = {"C": SVM_GRID["C"], "gamma": [g / x.shape[1] for g in SVM_GRID["gamma_times_dim"]]}
        best = GridSearchCV(SVC(), grid, cv=folds).fit(x[: len(index)], labels).best_params_
    model = SVC(**best).fit(x, np.concatenate([labels, spread_labels]))
    return model.predict(scaler.transform(codes.test))
