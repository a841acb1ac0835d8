"""Active learning on scikit-learn's digits, and the time to select a batch from a large pool.

Learning curves (part of ``benchmarks/labeling.py``): for each seed, the digits
are split into a pool (70 %) and a held-out test split (30 %, stratified). 20
pool items drawn at random are labeled to start; then, until 300 labels, the
model is refit on the labeled items, scored on the test split, and asked for
``predict_proba`` on the unlabeled pool, from which the strategy picks the next
10 items; a simulated oracle answers them from the true labels. The model is
the same for every strategy: ``LogisticRegression(max_iter=5000)`` on the
pixel values scaled to [0, 1] (lbfgs converges in under 100 iterations).
"Full-data accuracy" is that model fitted on the whole pool; a strategy's
"labels to 95 %" is the first label count whose test accuracy reaches 95 % of
it, averaged over 5 seeds (a seed that never reaches it counts as unreached,
and fails the target). The area under the curve is the mean test accuracy over
the label counts measured (0 to 1). Learning curves run with BLAS and OpenMP
single-threaded.

Strategies: random, margin and the default for batches of 10
(``default_strategy(10)``, the hybrid). Target: the default needs at most 80
labels; random is expected near 170 (``shared/ANCHORS.md``).

Selection speed: a pool of 1,000,000 items with 64 float32 features and 10
classes (probabilities given, float64); the best of 3 wall times of
``select(proba, X=X, n=10)`` including input validation, for margin and the
default hybrid. Target: under 1 second each.

``run(quick=True)`` uses 2 seeds and stops at 200 labels.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rich.table import Table
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from inloop.label.strategies import (
    MarginSampler,
    RandomSampler,
    SamplingStrategy,
    default_strategy,
)

SEED_LABELS = 20
BATCH = 10
BUDGET = 300
QUICK_BUDGET = 200
SEEDS = 5
QUICK_SEEDS = 2
TARGET_FRACTION = 0.95
TARGET_DEFAULT_LABELS = 80
EXPECTED_RANDOM_LABELS = 170
POOL_ITEMS = 1_000_000
POOL_FEATURES = 64
POOL_CLASSES = 10
TARGET_SELECT_S = 1.0


def _model() -> LogisticRegression:
    return LogisticRegression(max_iter=5000)


def _strategies(seed: int) -> dict[str, SamplingStrategy]:
    return {
        "random": RandomSampler(batch_size=BATCH, random_state=seed),
        "margin": MarginSampler(batch_size=BATCH, random_state=seed),
        "default": default_strategy(BATCH, random_state=seed),
    }


def _full_proba(model: LogisticRegression, X: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, also those not labeled yet (zeros)."""
    proba = np.zeros((X.shape[0], n_classes))
    proba[:, model.classes_] = model.predict_proba(X)
    return proba


def learning_curve(
    strategy: SamplingStrategy,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    budget: int,
) -> tuple[list[int], list[float]]:
    """Label counts and test accuracies of one active-learning run."""
    n_classes = int(y_pool.max()) + 1
    rng = np.random.RandomState(seed)
    labeled = np.zeros(len(y_pool), dtype=bool)
    labeled[rng.choice(len(y_pool), SEED_LABELS, replace=False)] = True
    counts: list[int] = []
    accuracies: list[float] = []
    while True:
        model = _model().fit(X_pool[labeled], y_pool[labeled])
        counts.append(int(labeled.sum()))
        accuracies.append(float(model.score(X_test, y_test)))
        if labeled.sum() >= budget:
            break
        proba = _full_proba(model, X_pool, n_classes)
        picks = strategy.select(proba, X=X_pool, n=BATCH, exclude=labeled)
        labeled[picks] = True  # the oracle answers from y_pool
    return counts, accuracies


def _labels_to_reach(counts: list[int], accuracies: list[float], target: float) -> int | None:
    for count, accuracy in zip(counts, accuracies, strict=True):
        if accuracy >= target:
            return count
    return None


def active_learning(quick: bool = False) -> dict[str, Any]:
    """Learning curves and labels-to-95 % for random, margin and the default strategy.

    BLAS and OpenMP run single-threaded here: the problems are tiny, and on a
    busy 2-core machine threaded BLAS made one LogisticRegression fit 100x slower.
    """
    with threadpool_limits(1):
        return _active_learning(quick)


def _active_learning(quick: bool) -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    seeds = QUICK_SEEDS if quick else SEEDS
    budget = QUICK_BUDGET if quick else BUDGET
    per_strategy: dict[str, dict[str, Any]] = {}
    full_accuracies = []
    for seed in range(seeds):
        X_pool, X_test, y_pool, y_test = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=seed
        )
        full = float(_model().fit(X_pool, y_pool).score(X_test, y_test))
        full_accuracies.append(full)
        target = TARGET_FRACTION * full
        for name, strategy in _strategies(seed).items():
            start = time.perf_counter()
            counts, accuracies = learning_curve(
                strategy, X_pool, y_pool, X_test, y_test, seed=seed, budget=budget
            )
            entry = per_strategy.setdefault(
                name,
                {"strategy": repr(strategy), "counts": counts, "curves": [], "reached": []},
            )
            entry["curves"].append(accuracies)
            entry["reached"].append(_labels_to_reach(counts, accuracies, target))
            entry.setdefault("seconds", 0.0)
            entry["seconds"] += time.perf_counter() - start
    for entry in per_strategy.values():
        curves = np.asarray(entry["curves"])
        reached = entry["reached"]
        entry["mean_curve"] = [round(float(v), 4) for v in curves.mean(axis=0)]
        entry["auc"] = round(float(curves.mean()), 4)
        entry["labels_to_95"] = None if any(r is None for r in reached) else float(np.mean(reached))
        entry["curves"] = [[round(v, 4) for v in curve] for curve in entry["curves"]]
        entry["seconds"] = round(entry["seconds"], 2)
    default_labels = per_strategy["default"]["labels_to_95"]
    return {
        "seeds": seeds,
        "seed_labels": SEED_LABELS,
        "batch": BATCH,
        "budget": budget,
        "full_accuracy": round(float(np.mean(full_accuracies)), 4),
        "strategies": per_strategy,
        "target_default_labels": TARGET_DEFAULT_LABELS,
        "expected_random_labels": EXPECTED_RANDOM_LABELS,
        "default_passes": default_labels is not None and default_labels <= TARGET_DEFAULT_LABELS,
    }


def selection_speed() -> dict[str, Any]:
    """Best-of-3 wall time to select 10 from 1,000,000 items, margin and default."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((POOL_ITEMS, POOL_FEATURES), dtype=np.float32)
    logits = rng.standard_normal((POOL_ITEMS, POOL_CLASSES)) * 3.0
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    timings = {}
    for name, strategy in {
        "margin": MarginSampler(batch_size=BATCH),
        "default": default_strategy(BATCH, random_state=0),
    }.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            picks = strategy.select(proba, X=X, n=BATCH)
            best = min(best, time.perf_counter() - start)
        timings[name] = {
            "strategy": repr(strategy),
            "seconds": round(best, 4),
            "picked": len(picks),
            "passes": best < TARGET_SELECT_S,
        }
    return {
        "items": POOL_ITEMS,
        "features": POOL_FEATURES,
        "classes": POOL_CLASSES,
        "batch": BATCH,
        "target_seconds": TARGET_SELECT_S,
        "timings": timings,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Both parts; JSON-serializable, with each target and whether it passes."""
    learning = active_learning(quick)
    speed = selection_speed()
    return {
        "quick": quick,
        "active_learning": learning,
        "selection_speed": speed,
        "passes": learning["default_passes"]
        and all(t["passes"] for t in speed["timings"].values()),
    }


def _fmt_labels(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def table(result: dict[str, Any]) -> Table:
    """One Rich table: labels to 95 %, AUC per strategy, then selection times."""
    learning = result["active_learning"]
    speed = result["selection_speed"]
    out = Table(
        title=(
            f"Active learning on digits: {learning['seeds']} seeds, {learning['seed_labels']} "
            f"seed labels, batches of {learning['batch']}, up to {learning['budget']} labels; "
            f"full-data accuracy {learning['full_accuracy']:.3f}"
        )
    )
    out.add_column("measure")
    out.add_column("strategy")
    out.add_column("value", justify="right")
    out.add_column("per seed", justify="right")
    out.add_column("target", justify="right")
    out.add_column("pass", justify="center")
    for name, entry in learning["strategies"].items():
        is_default = name == "default"
        if is_default:
            target = f"<= {learning['target_default_labels']}"
        elif name == "random":
            target = f"~{learning['expected_random_labels']} (anchor)"
        else:
            target = "~100 (anchor)"
        out.add_row(
            "labels to 95 % of full",
            name,
            _fmt_labels(entry["labels_to_95"]),
            " ".join("-" if r is None else str(r) for r in entry["reached"]),
            target,
            ("yes" if learning["default_passes"] else "NO") if is_default else "",
        )
    for name, entry in learning["strategies"].items():
        out.add_row("area under curve", name, f"{entry['auc']:.4f}", "", "", "")
    for name, timing in speed["timings"].items():
        out.add_row(
            f"select {speed['batch']} of {speed['items']:,} x {speed['features']}",
            name,
            f"{timing['seconds'] * 1000:.0f} ms",
            "",
            f"< {speed['target_seconds'] * 1000:.0f} ms",
            "yes" if timing["passes"] else "NO",
        )
    return out


if __name__ == "__main__":
    import argparse
    import json

    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(args.quick)
    Console().print(table(result))
    print(json.dumps({k: v for k, v in result.items() if k != "active_learning"}, indent=1))
