"""Consensus of three simulated annotators: majority vote against Dawid-Skene.

Ground truth is the labels of scikit-learn's digits (1,797 items, 10
classes). Three simulated annotators label every item, right with
probability 0.9, 0.75 and 0.6; a wrong answer is one of the nine other
classes, uniformly at random. Majority vote (ties broken at random) and
Dawid-Skene (:func:`inloop.label.agreement.dawid_skene`) each give one label
per item, scored against the truth, over several seeds. Dawid-Skene also
estimates each annotator's accuracy from its confusion matrix, shown beside
the true one.

Target: Dawid-Skene above majority vote (ANCHORS.md measured 0.896 / 0.921).

    python benchmarks/_labeling_consensus.py [--quick]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from rich.table import Table
from sklearn.datasets import load_digits

from inloop.label.agreement import dawid_skene, majority_vote

ACCURACIES = (0.9, 0.75, 0.6)
ANCHOR = {"majority_vote": 0.896, "dawid_skene": 0.921}


def simulate(
    truth: np.ndarray, accuracies: tuple[float, ...], n_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Labels of annotators with the given accuracies; errors uniform over the other classes."""
    n_items, n_annotators = len(truth), len(accuracies)
    correct = rng.random((n_items, n_annotators)) < np.asarray(accuracies)
    shift = rng.integers(1, n_classes, size=(n_items, n_annotators))
    wrong = (truth[:, None] + shift) % n_classes
    return np.where(correct, truth[:, None], wrong)


def run(quick: bool = False) -> dict[str, Any]:
    """Score both consensus methods over ``3`` seeds (``--quick``) or ``10``."""
    truth = load_digits().target.astype(np.int64)
    n_classes = int(truth.max()) + 1
    seeds = list(range(3 if quick else 10))
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        labels = simulate(truth, ACCURACIES, n_classes, rng)
        start = time.perf_counter()
        vote = majority_vote(labels, n_classes, random_state=seed)
        vote_seconds = time.perf_counter() - start
        start = time.perf_counter()
        model = dawid_skene(labels, n_classes)
        ds_seconds = time.perf_counter() - start
        rows.append(
            {
                "seed": seed,
                "majority_vote": float(np.mean(vote.labels == truth)),
                "dawid_skene": float(np.mean(model.labels == truth)),
                "observed_accuracy": [float(np.mean(labels[:, j] == truth)) for j in range(3)],
                "estimated_accuracy": [float(a) for a in model.annotator_accuracy],
                "dawid_skene_iterations": model.n_iter,
                "dawid_skene_converged": model.converged,
                "majority_vote_seconds": vote_seconds,
                "dawid_skene_seconds": ds_seconds,
            }
        )
    mean_vote = float(np.mean([r["majority_vote"] for r in rows]))
    mean_ds = float(np.mean([r["dawid_skene"] for r in rows]))
    wins = sum(r["dawid_skene"] > r["majority_vote"] for r in rows)
    estimated = np.mean([r["estimated_accuracy"] for r in rows], axis=0)
    return {
        "name": "consensus",
        "data": "digits labels as ground truth",
        "n_items": len(truth),
        "n_classes": n_classes,
        "true_accuracy": list(ACCURACIES),
        "seeds": seeds,
        "per_seed": rows,
        "majority_vote": mean_vote,
        "dawid_skene": mean_ds,
        "dawid_skene_wins": wins,
        "estimated_accuracy": [float(a) for a in estimated],
        "max_accuracy_error": float(np.max(np.abs(estimated - np.asarray(ACCURACIES)))),
        "dawid_skene_seconds": float(np.mean([r["dawid_skene_seconds"] for r in rows])),
        "anchor": ANCHOR,
        "targets": [
            {
                "name": "Dawid-Skene above majority vote (mean over seeds, and on every seed)",
                "value": f"{mean_ds:.3f} vs {mean_vote:.3f} ({wins}/{len(rows)} seeds)",
                "passed": bool(mean_ds > mean_vote and wins == len(rows)),
            }
        ],
    }


def table(result: dict[str, Any]) -> Table:
    """Accuracy of each method against the truth, and estimated vs true annotator accuracy."""
    out = Table(
        title=(
            f"Consensus of 3 simulated annotators ({result['n_items']} digits, "
            f"{result['n_classes']} classes, {len(result['seeds'])} seeds)"
        )
    )
    out.add_column("measure")
    out.add_column("measured", justify="right")
    out.add_column("reference", justify="right")
    out.add_column("target")
    anchor = result["anchor"]
    gains = [r["dawid_skene"] - r["majority_vote"] for r in result["per_seed"]]
    target = result["targets"][0]
    mark = "[green]pass[/green]" if target["passed"] else "[red]FAIL[/red]"
    out.add_row(
        "majority vote, accuracy vs truth",
        f"{result['majority_vote']:.3f}",
        f"{anchor['majority_vote']:.3f} (anchor)",
        "",
    )
    out.add_row(
        "Dawid-Skene, accuracy vs truth",
        f"{result['dawid_skene']:.3f}",
        f"{anchor['dawid_skene']:.3f} (anchor)",
        f"above majority vote: {mark}",
    )
    out.add_row(
        "Dawid-Skene minus majority vote, per seed",
        f"{min(gains):+.3f} .. {max(gains):+.3f}",
        "",
        f"wins on {result['dawid_skene_wins']}/{len(gains)} seeds",
    )
    for j, (true, estimated) in enumerate(
        zip(result["true_accuracy"], result["estimated_accuracy"], strict=True)
    ):
        out.add_row(
            f"annotator {j}, accuracy estimated by Dawid-Skene",
            f"{estimated:.3f}",
            f"{true:.2f} (true)",
            "",
        )
    out.add_row(
        "Dawid-Skene time per fit", f"{result['dawid_skene_seconds'] * 1000:.1f} ms", "", ""
    )
    return out


if __name__ == "__main__":
    from rich.console import Console

    outcome = run(quick="--quick" in sys.argv[1:])
    Console(width=120).print(table(outcome))
