#!/usr/bin/env python3
"""Writes fold-0.json .. fold-{K-1}.json: stratified K-fold cross-validation of a CSV table.

    python3 examples/iris/make_folds.py [--csv examples/iris/iris.csv] [--target species]
                                        [--k 5] [--seed 42] [--out DIR] [--submission-dir DIR]

Standard library only and deterministic: within each class the rows are shuffled with
random.Random(seed), then dealt round-robin to the K test folds, so every fold holds each class
in proportion. Each file is the fold.json that images/fold-python/datarun-fold reads.
"""
import argparse
import csv
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def stratified_folds(labels, k, seed):
    """[(train_is, test_is)] * k; test sets are disjoint and cover every row once."""
    rng = random.Random(seed)
    test = [[] for _ in range(k)]
    dealt = 0
    for label in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(rows)
        for j, i in enumerate(rows):
            test[(dealt + j) % k].append(i)  # carry on where the last class stopped
        dealt += len(rows)
    return [(sorted(set(range(len(labels))) - set(t)), sorted(t)) for t in test]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", default=os.path.join(HERE, "iris.csv"))
    ap.add_argument("--target", default="species")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=".")
    ap.add_argument("--elements", default="classifier",
                    help="comma-separated workflow elements, e.g. feature_extractor,classifier")
    ap.add_argument("--submission-dir", help="where the .py files are, inside the input dir")
    a = ap.parse_args()
    with open(a.csv, newline="") as f:
        labels = [row[a.target] for row in csv.DictReader(f)]
    os.makedirs(a.out, exist_ok=True)
    for k, (train, test) in enumerate(stratified_folds(labels, a.k, a.seed)):
        fold = {"dataset": os.path.basename(a.csv), "target_column": a.target,
                "train_is": train, "test_is": test, "workflow_elements": a.elements.split(",")}
        if a.submission_dir:
            fold["submission_dir"] = a.submission_dir
        path = os.path.join(a.out, f"fold-{k}.json")
        with open(path, "w") as f:
            json.dump(fold, f)
            f.write("\n")
        print(f"{path}: {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    main()
