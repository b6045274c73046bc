"""One cross-validation fold of a 1-D least-squares fit, in plain Python.

Usage: fold.py FOLD K. Reads $DATARUN_INPUT/data.csv (columns x,y), trains on every row whose
index mod K != FOLD, tests on the rest, and writes predictions.csv and score.json to
$DATARUN_OUTPUT.
"""
import csv
import json
import math
import os
import sys

fold, k = int(sys.argv[1]), int(sys.argv[2])
with open(os.path.join(os.environ["DATARUN_INPUT"], "data.csv")) as f:
    rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
train = [r for i, r in enumerate(rows) if i % k != fold]
test = [(i, r) for i, r in enumerate(rows) if i % k == fold]
n = len(train)
mx = sum(x for x, _ in train) / n
my = sum(y for _, y in train) / n
slope = sum((x - mx) * (y - my) for x, y in train) / sum((x - mx) ** 2 for x, _ in train)
intercept = my - slope * mx
out = os.environ["DATARUN_OUTPUT"]
sq = 0.0
with open(os.path.join(out, "predictions.csv"), "w") as f:
    f.write("index,y,prediction\n")
    for i, (x, y) in test:
        p = slope * x + intercept
        sq += (p - y) ** 2
        f.write(f"{i},{y},{p:.4f}\n")
score = {"fold": fold, "slope": slope, "intercept": intercept, "rmse": math.sqrt(sq / len(test))}
with open(os.path.join(out, "score.json"), "w") as f:
    json.dump(score, f)
print(json.dumps(score))
