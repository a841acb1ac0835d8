"""Five trivial steps in a line: measures the fixed cost of a run and of a step."""

from metaflow import FlowSpec, step


class LinearFlow(FlowSpec):
    """start -> one -> two -> three -> end, each setting one small artifact."""

    @step
    def start(self):
        self.count = 0
        self.next(self.one)

    @step
    def one(self):
        self.count += 1
        self.next(self.two)

    @step
    def two(self):
        self.count += 1
        self.next(self.three)

    @step
    def three(self):
        self.count += 1
        self.next(self.end)

    @step
    def end(self):
        print("count", self.count)


if __name__ == "__main__":
    LinearFlow()
