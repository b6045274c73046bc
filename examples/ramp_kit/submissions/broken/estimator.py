"""A submission whose fit fails: each fold must fail with this traceback in its log."""
from sklearn.base import BaseEstimator, ClassifierMixin


class Broken(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        raise ValueError("this submission is broken on purpose")


def get_estimator():
    return Broken()
