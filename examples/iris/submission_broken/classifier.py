"""A submission whose fit fails: its traceback must reach the fold's log."""


class Classifier:
    def fit(self, X, y):
        raise ValueError("this submission is broken on purpose")

    def predict_proba(self, X):
        return None
