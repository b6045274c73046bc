#!/usr/bin/env python3
"""Writes data/train.csv (120 rows) and data/test.csv (30 rows) from examples/iris/iris.csv:
a stratified hold-out of 10 rows per species, seed 42, standard library only. The committed
files are its output; running it again gives the same bytes.

    python3 examples/ramp_kit/make_data.py [--check]
"""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
IRIS = os.path.join(HERE, "..", "iris", "iris.csv")
TEST_PER_CLASS = 10


def split():
    with open(IRIS) as f:
        header, *rows = [line for line in f.read().splitlines() if line]
    by_class = {}
    for i, row in enumerate(rows):
        by_class.setdefault(row.rsplit(",", 1)[1], []).append(i)
    rng = random.Random(42)
    test = set()
    for species in sorted(by_class):
        test.update(rng.sample(by_class[species], TEST_PER_CLASS))
    train_rows = [r for i, r in enumerate(rows) if i not in test]
    test_rows = [r for i, r in enumerate(rows) if i in test]
    return {name: "\n".join([header] + part) + "\n"
            for name, part in (("train.csv", train_rows), ("test.csv", test_rows))}


def main(argv):
    files = split()
    for name, text in files.items():
        path = os.path.join(HERE, "data", name)
        if "--check" in argv:
            with open(path) as f:
                if f.read() != text:
                    sys.exit(f"{path} differs from what make_data.py writes")
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        print(f"{path}: {text.count(chr(10)) - 1} rows")


if __name__ == "__main__":
    main(sys.argv[1:])
