class Classifier:
    def fit(self, X, y):
        raise RuntimeError("this text classifier is broken on purpose")

    def predict_proba(self, X):
        raise RuntimeError("never fitted")
