"""Problem script of the text example: 3-topic classification of short texts.

datarun-prepare calls prepare_data on a copy of the dataset (docs.jsonl and this file); the
fold runner datarun-fold calls the other four. The submission has two workflow elements,
vectorizer.py (class Vectorizer: fit(texts, y), transform(texts)) and classifier.py (class
Classifier: fit(features, y), predict_proba(features)).
"""
import importlib
import json
import os
import random

import numpy as np

SPLIT_SEED, TEST_SHARE = 42, 0.2


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, docs):
    with open(path, "w") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")


def prepare_data(path):
    """The custom split: a seeded shuffle of docs.jsonl, 80% train.jsonl, 20% test.jsonl."""
    docs = read_jsonl(os.path.join(path, "docs.jsonl"))
    random.Random(SPLIT_SEED).shuffle(docs)
    n_test = round(len(docs) * TEST_SHARE)
    write_jsonl(os.path.join(path, "train.jsonl"), docs[n_test:])
    write_jsonl(os.path.join(path, "test.jsonl"), docs[:n_test])


def read(path, name):
    docs = read_jsonl(os.path.join(path, name))
    return [d["text"] for d in docs], np.array([d["topic"] for d in docs])


def get_train_data(path):
    return read(path, "train.jsonl")


def get_test_data(path):
    return read(path, "test.jsonl")


def train_submission(module_path, X_train, y_train, train_is):
    vectorizer = importlib.import_module(".vectorizer", module_path).Vectorizer()
    classifier = importlib.import_module(".classifier", module_path).Classifier()
    texts, y = [X_train[i] for i in train_is], y_train[train_is]
    vectorizer.fit(texts, y)
    classifier.fit(vectorizer.transform(texts), y)
    return vectorizer, classifier


def test_submission(trained, X, indices):
    vectorizer, classifier = trained
    return classifier.predict_proba(vectorizer.transform([X[i] for i in indices]))
