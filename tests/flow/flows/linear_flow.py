"""A linear flow with parameters, used by the runtime tests."""

from inloop import FlowSpec, JSONType, Parameter, current, step


class LinearFlow(FlowSpec):
    """Three steps in a row."""

    alpha = Parameter("alpha", default=0.5, help="a float")
    config = Parameter("config", default='{"k": 1}', type=JSONType, help="json")
    label = Parameter("label", default="x")

    @step
    def start(self):
        self.values = [1, 2, 3]
        self.seen_run_id = current.run_id
        print("hello from start")
        self.next(self.middle)

    @step
    def middle(self):
        self.total = sum(self.values) * self.alpha
        self.values.append(4)  # in-place change must be persisted
        self.pathspec = current.pathspec
        self.next(self.end)

    @step
    def end(self):
        self.k = self.config["k"]
        self.summary = f"{self.label}:{self.total}"


if __name__ == "__main__":
    LinearFlow()
