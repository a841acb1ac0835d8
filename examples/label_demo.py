"""Active learning on the digits: a simulated annotator, a learning curve, then your turn.

Run it after ``examples/digits_flow.py`` (``make demo`` runs both)::

    python examples/label_demo.py                  # import, simulate, print the curve
    python examples/label_demo.py --max-labels 60  # a shorter simulation
    python examples/label_demo.py --learn          # keep the model in the loop while you label

1. The digits not held out for testing become unlabeled feature items of the
   labeling project ``digits`` in your ``INLOOP_HOME`` (created once, reused
   after), ready to label by hand in the browser.
2. A SIMULATED annotator, who answers from the true labels, then labels
   through the real queue in a scratch database, twice: once with the queue
   ordered by an :class:`~inloop.label.learner.ActiveLearner` (the default
   hybrid strategy), once in random order. After every batch the model is
   retrained and scored on the held-out digits, which gives the learning
   curves. The scratch database is thrown away, so the simulation never
   mixes its labels into ``digits`` and every run starts from zero.
3. It prints how to label by hand: ``inloop server``, then the project's
   labeling page.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = "digits"
CLASSES = [{"name": str(d), "key": str(d)} for d in range(10)]
INSTRUCTIONS = "Which digit is this 8x8 image (64 pixel values, 0-16, row by row)?"
ANNOTATOR = "simulated-annotator"
URL = f"http://127.0.0.1:8000/projects/{PROJECT}/label"


def scale_pixels(X: Any) -> Any:
    """Pixel values 0-16 to 0-1: the model's first step."""
    return np.asarray(X, dtype=np.float64) / 16.0


def make_model() -> Any:
    """The model the learner retrains: logistic regression on scaled pixels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(scale_pixels), LogisticRegression(max_iter=5000))


def split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pool rows (their digit indices), pool features and labels, test features and labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    index = np.arange(len(y))
    pool_index, test_index = train_test_split(index, test_size=0.25, stratify=y, random_state=seed)
    pool_index = np.sort(pool_index)
    return pool_index, X[pool_index], y[pool_index].astype(str), X[test_index], y[test_index]


def import_digits(pool_index: np.ndarray, X_pool: np.ndarray) -> tuple[int, int]:
    """Create (or reuse) the project and add the pool digits it lacks; (added, total)."""
    from inloop.label import create_project, get_items, import_items, list_projects

    if PROJECT in {p.name for p in list_projects()}:
        print(f"Reusing the labeling project {PROJECT!r}.")
    else:
        create_project(PROJECT, CLASSES, instructions=INSTRUCTIONS)
        print(f"Created the labeling project {PROJECT!r} (classes 0-9, keys 0-9).")
    have = {item.external_id for item in get_items(PROJECT)}
    ids = [f"digit-{i}" for i in pool_index]
    missing = [k for k, name in enumerate(ids) if name not in have]
    if missing:
        import_items(PROJECT, X_pool[missing], ids=[ids[k] for k in missing])
    return len(missing), len(have) + len(missing)


@dataclass
class Curve:
    """One arm of the simulation: test accuracy after each batch of labels."""

    name: str
    labels: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    stop_at: int | None = None  # labels when the learner's stopping report first said stop

    def reaches(self, target: float) -> int | None:
        return next(
            (n for n, a in zip(self.labels, self.accuracy, strict=True) if a >= target), None
        )


def simulate(
    name: str,
    strategy: Any,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    *,
    engine: Any,
    seed_rows: np.ndarray,
    batch: int,
    max_labels: int,
    seed: int,
) -> Curve:
    """Label through the queue with the SIMULATED annotator; the learner orders the queue."""
    from inloop.label import annotate, create_project, import_items
    from inloop.label.learner import ActiveLearner

    project = f"{PROJECT}-{name}"
    create_project(project, CLASSES, engine=engine)
    ids = [str(i) for i in range(len(y_pool))]
    item_ids = import_items(project, X_pool, ids=ids, engine=engine).item_ids
    row_of = {item_id: row for row, item_id in enumerate(item_ids)}
    reason = "SIMULATED: answered from the true label"
    for row in seed_rows:
        annotate(project, item_ids[row], ANNOTATOR, y_pool[row], reason=reason, engine=engine)
    learner = ActiveLearner(
        project,
        make_model(),
        strategy=strategy,
        retrain_every=batch,
        random_state=seed,
        engine=engine,
    )
    curve = Curve(name)
    test_labels = y_test.astype(str)
    from inloop.label import next_items

    while True:
        report = learner.refresh()
        if report is None:  # pragma: no cover - the seed labels cover several digits
            raise RuntimeError("the seed labels hold fewer than 2 digits")
        curve.labels.append(report.n_labels)
        curve.accuracy.append(float(learner.model_.score(X_test, test_labels)))
        if report.should_stop and curve.stop_at is None:
            curve.stop_at = report.n_labels
        if report.n_labels >= max_labels or report.n_pool == 0:
            return curve
        for lease in next_items(project, ANNOTATOR, n=batch, engine=engine):
            row = row_of[lease.item_id]
            annotate(project, lease.item_id, ANNOTATOR, y_pool[row], reason=reason, engine=engine)


def print_curves(curves: list[Curve], full: float, every: int) -> None:
    from rich.console import Console
    from rich.table import Table

    random_curve, active = curves
    target = 0.95 * full
    table = Table(title="Test accuracy by labels (SIMULATED annotator)")
    table.add_column("labels", justify="right")
    table.add_column("random order", justify="right")
    table.add_column("active learning", justify="right")
    for k, count in enumerate(active.labels):
        if k % every and k != len(active.labels) - 1:
            continue
        table.add_row(str(count), f"{random_curve.accuracy[k]:.3f}", f"{active.accuracy[k]:.3f}")
    console = Console(width=100)
    console.print(table)
    print(f"With every pool digit labeled (full data): {full:.3f}.")
    for curve in (random_curve, active):
        reached = curve.reaches(target)
        shown = f"after {reached} labels" if reached is not None else "not within the budget"
        print(f"  {curve.name:>15}: 95% of full-data accuracy ({target:.3f}) {shown}")
    if active.stop_at is not None:
        print(
            f"  The active learner's stopping report said 'more labels stop paying' at "
            f"{active.stop_at} labels (predictions on the pool stable)."
        )
    else:
        print("  The active learner's stopping report had not said stop within the budget.")


def run_learner() -> None:
    """Keep the digits queue ordered by the model while people label (until Ctrl-C)."""
    from inloop.label.learner import ActiveLearner

    learner = ActiveLearner(PROJECT, make_model(), retrain_every=10, interval=2.0)
    print(f"Retraining on {PROJECT!r} every 10 new labels; Ctrl-C to stop.")
    seen = 0
    with learner:
        try:
            while True:
                time.sleep(1.0)
                if len(learner.reports_) > seen:
                    seen = len(learner.reports_)
                    report = learner.reports_[-1]
                    print(f"refresh {report.refresh}: {report.n_labels} labels; {report.reason}")
                if learner.error_ is not None:
                    print(f"refresh failed: {learner.error_}", file=sys.stderr)
        except KeyboardInterrupt:
            print("Stopped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-labels", type=int, default=200, help="labels per simulated arm")
    parser.add_argument("--batch", type=int, default=10, help="labels between retrainings")
    parser.add_argument("--seed-labels", type=int, default=20, help="random labels to start")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the model")
    parser.add_argument(
        "--learn", action="store_true", help="run the learner on 'digits' while you label"
    )
    args = parser.parse_args(argv)
    if args.batch < 1 or args.seed_labels < 2 or args.max_labels < args.seed_labels:
        parser.error("need --batch >= 1, --seed-labels >= 2 and --max-labels >= --seed-labels")
    if args.learn:
        run_learner()
        return 0

    from threadpoolctl import threadpool_limits

    from inloop.label.strategies import RandomSampler, default_strategy
    from inloop.settings import get_settings
    from inloop.store.db import dispose_engines, get_engine

    started = time.perf_counter()
    pool_index, X_pool, y_pool, X_test, y_test = split(args.seed)
    added, total = import_digits(pool_index, X_pool)
    print(
        f"Project {PROJECT!r}: {total} unlabeled digit items ({added} added now); "
        f"{len(y_test)} digits held out for testing."
    )
    print(
        f"\n=== SIMULATED annotator: answers come from the true labels, not from a person ===\n"
        f"Two runs through the queue, {args.seed_labels} random seed labels, then batches of "
        f"{args.batch} up to {args.max_labels} labels: random order vs the active learner."
    )
    rng = np.random.RandomState(args.seed)
    seed_rows = rng.choice(len(y_pool), args.seed_labels, replace=False)
    with tempfile.TemporaryDirectory(prefix="inloop-label-demo-") as scratch:
        engine = get_engine(f"sqlite:///{Path(scratch) / 'simulation.db'}")
        strategies = {
            "random order": RandomSampler(batch_size=args.batch, random_state=args.seed),
            "active learning": default_strategy(args.batch, random_state=args.seed),
        }
        curves = []
        for name, strategy in strategies.items():
            curves.append(
                simulate(
                    name.replace(" ", "-"),
                    strategy,
                    X_pool,
                    y_pool,
                    X_test,
                    y_test,
                    engine=engine,
                    seed_rows=seed_rows,
                    batch=args.batch,
                    max_labels=args.max_labels,
                    seed=args.seed,
                )
            )
            curves[-1].name = name
        dispose_engines()
    with threadpool_limits(limits=1):
        full = float(make_model().fit(X_pool, y_pool).score(X_test, y_test.astype(str)))
    print()
    print_curves(curves, full, every=max(1, 20 // args.batch))
    home = get_settings().home
    print(
        f"\nSimulation took {time.perf_counter() - started:.1f} s.\n"
        f"\nNow label the {PROJECT!r} digits by hand in the browser:\n"
        f"  export INLOOP_HOME={home}\n"
        f"  inloop server            # on first start it prints the admin token\n"
        f"  open {URL}\n"
        f"  and log in with that token; keys 0-9 answer, the queue advances.\n"
        f"The server keeps a model in the loop: it retrains every 10 labels, reorders the\n"
        f"queue and shows its suggestion on the page (`inloop server --no-learn` turns it off)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
