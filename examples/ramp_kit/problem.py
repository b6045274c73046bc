"""Iris as a RAMP kit: a small, self-contained ramp-workflow problem for datarun's RAMP folds.

`ramp-test --submission starting_kit` runs its 4 CV folds one after another; datarun runs each
fold as its own fold (`datarun-ramp-fold`, see README.md), in parallel across runners.
"""
import os

import pandas as pd
import rampwf as rw
from sklearn.model_selection import StratifiedShuffleSplit

problem_title = "Iris classification (datarun example kit)"
_target_column_name = "species"
_prediction_label_names = ["setosa", "versicolor", "virginica"]

# A multiclass prediction: one probability column per label, in this order.
Predictions = rw.prediction_types.make_multiclass(label_names=_prediction_label_names)
# A submission is submissions/<name>/estimator.py with get_estimator(), a scikit-learn classifier
# (fit on a DataFrame of the four measurements, predict_proba).
workflow = rw.workflows.Estimator()

score_types = [
    rw.score_types.Accuracy(name="acc"),
    rw.score_types.NegativeLogLikelihood(name="nll"),
    rw.score_types.MacroAveragedRecall(name="mar"),
]


def get_cv(X, y):
    """4 stratified shuffle splits, 20% validation each; the same folds on every machine."""
    cv = StratifiedShuffleSplit(n_splits=4, test_size=0.2, random_state=57)
    return cv.split(X, y)


def _read_data(path, f_name):
    data = pd.read_csv(os.path.join(path, "data", f_name))
    y_array = data[_target_column_name].values
    X_df = data.drop(_target_column_name, axis=1)
    return X_df, y_array


def get_train_data(path="."):
    return _read_data(path, "train.csv")


def get_test_data(path="."):
    return _read_data(path, "test.csv")
