"""Train a few classifiers on scikit-learn's handwritten digits and keep the best.

``start`` splits the data, a ``foreach`` trains one model per configuration in
parallel, the join picks the most accurate one and ``end`` prints a results
table and how to look at the run afterwards.

    python examples/digits_flow.py run
    python examples/digits_flow.py run --configs '[{"model": "svc", "C": 3}]'
    python examples/digits_flow.py show

Each configuration is a dict with ``model`` (``logreg`` or ``svc``) and ``C``,
the inverse regularization strength of both.
"""

from __future__ import annotations

import json
import time
from typing import Any

from inloop import FlowSpec, JSONType, Parameter, current, step

DEFAULT_CONFIGS = [
    {"model": "logreg", "C": 0.01},
    {"model": "logreg", "C": 0.1},
    {"model": "logreg", "C": 1.0},
    {"model": "svc", "C": 1.0},
    {"model": "svc", "C": 10.0},
]
MODELS = ("logreg", "svc")


def make_model(config: dict[str, Any], seed: int) -> Any:
    """A scikit-learn pipeline (scaling, then the classifier) for one configuration."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    c = float(config["C"])
    if config["model"] == "logreg":
        classifier: Any = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    else:
        classifier = SVC(C=c, gamma="scale", random_state=seed)
    return make_pipeline(StandardScaler(), classifier)


def check_configs(configs: object) -> list[dict[str, Any]]:
    """The configurations, or a ValueError naming the first bad one and what is accepted."""
    if not isinstance(configs, list) or not configs:
        raise ValueError(
            f"--configs must be a non-empty JSON list of objects. Got {configs!r}. "
            'Try --configs \'[{"model": "svc", "C": 1.0}]\'.'
        )
    for config in configs:
        if not isinstance(config, dict) or config.get("model") not in MODELS:
            raise ValueError(
                f"Each config needs 'model' set to one of {', '.join(MODELS)}. Got {config!r}."
            )
        c = config.get("C", 1.0)
        if isinstance(c, bool) or not isinstance(c, int | float) or c <= 0:
            raise ValueError(f"'C' must be a number > 0. Got {c!r} in {config!r}.")
    return [{"model": config["model"], "C": float(config.get("C", 1.0))} for config in configs]


class DigitsFlow(FlowSpec):
    """Fan out over classifier configurations on the digits data; keep the best model."""

    configs = Parameter(
        "configs",
        type=JSONType,
        default=json.dumps(DEFAULT_CONFIGS),
        help='JSON list of {"model": "logreg"|"svc", "C": float} to try.',
    )
    test_size = Parameter("test_size", default=0.25, help="Fraction of images held out.")
    seed = Parameter("seed", default=0, help="Seed of the split and the models.")

    @step
    def start(self):
        """Load the digits, split them and list the configurations to train."""
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        self.grid = check_configs(self.configs)
        features, labels = load_digits(return_X_y=True)
        self.X_train, self.X_test, self.y_train, self.y_test = train_test_split(
            features, labels, test_size=self.test_size, random_state=self.seed, stratify=labels
        )
        self.next(self.train, foreach="grid")

    @step
    def train(self):
        """Fit one configuration and score it on the held-out images."""
        self.config = self.input
        started = time.perf_counter()
        self.model = make_model(self.config, self.seed).fit(self.X_train, self.y_train)
        self.fit_seconds = time.perf_counter() - started
        self.accuracy = float(self.model.score(self.X_test, self.y_test))
        self.next(self.join)

    @step
    def join(self, inputs):
        """Keep every score, and the most accurate model."""
        self.results = sorted(
            (
                {"config": task.config, "accuracy": task.accuracy, "fit_seconds": task.fit_seconds}
                for task in inputs
            ),
            key=lambda row: -row["accuracy"],
        )
        best = max(inputs, key=lambda task: task.accuracy)
        self.best_model = best.model
        self.best_config = best.config
        self.best_accuracy = best.accuracy
        # The data split and the grid are the same in every branch: carry them on.
        self.merge_artifacts(inputs, exclude=["config", "model", "accuracy", "fit_seconds"])
        self.next(self.end)

    @step
    def end(self):
        """Print the results table and how to inspect this run later."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"DigitsFlow run {current.run_id}: test accuracy")
        table.add_column("model")
        table.add_column("C", justify="right")
        table.add_column("accuracy", justify="right")
        table.add_column("fit s", justify="right")
        for row in self.results:
            mark = " *" if row["config"] == self.best_config else ""
            table.add_row(
                row["config"]["model"] + mark,
                f"{row['config']['C']:g}",
                f"{row['accuracy']:.4f}",
                f"{row['fit_seconds']:.2f}",
            )
        console = Console(width=100)
        console.print(table)
        console.print(f"* best: {self.best_config} on {len(self.y_test)} test images")
        console.print(
            "\nInspect this run from Python:\n"
            "    from inloop import Flow\n"
            '    run = Flow("DigitsFlow").latest_run\n'
            "    run.data.best_model, run.data.best_accuracy\n"
            "    run.data.results\n"
            '    [task.data.accuracy for task in run["train"]]\n'
            "or from the shell:\n"
            "    inloop runs DigitsFlow\n"
            f"    inloop logs DigitsFlow/{current.run_id}/end",
            highlight=False,
            markup=False,
        )


if __name__ == "__main__":
    DigitsFlow()
