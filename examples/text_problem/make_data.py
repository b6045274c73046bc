#!/usr/bin/env python3
"""Writes docs.jsonl: 300 short texts in 3 topics, {"text": ..., "topic": ...} per line.

Each topic has its own vocabulary; every text mixes some of it with words shared by all topics
and, now and then, a word of another topic, so a classifier must weigh words, not spot one.
Standard library only; seed 6, the same file on every run:

    python3 examples/text_problem/make_data.py [--out DIR]   # default: beside this script
"""
import argparse
import json
import os
import random

TOPICS = {
    "astronomy": "star planet orbit telescope galaxy comet nebula moon asteroid eclipse "
                 "crater meteor cosmos solar lunar rocket satellite supernova quasar gravity",
    "cooking": "recipe oven flour butter garlic onion simmer roast bake pepper salt sauce "
               "dough knife pan kitchen spice boil chop broth",
    "football": "goal striker referee penalty match league pitch keeper tackle corner "
                "offside stadium coach season derby header foul midfield kickoff trophy",
}
SHARED = ("the a of and with we they it this that new good time day people week really "
          "just about very first last great big small").split()
N_PER_TOPIC, SEED = 100, 6


def make(rng):
    docs = []
    names = sorted(TOPICS)
    for topic in names:
        own = TOPICS[topic].split()
        others = [w for t in names if t != topic for w in TOPICS[t].split()]
        for _ in range(N_PER_TOPIC):
            words = rng.choices(own, k=rng.randint(2, 5))
            words += rng.choices(SHARED, k=rng.randint(3, 8))
            if rng.random() < 0.3:
                words += rng.choices(others, k=1)
            rng.shuffle(words)
            docs.append({"text": " ".join(words), "topic": topic})
    rng.shuffle(docs)
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "docs.jsonl")
    with open(path, "w") as f:
        for doc in make(random.Random(SEED)):
            f.write(json.dumps(doc) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
