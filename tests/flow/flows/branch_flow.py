"""Static branches joined with inputs.<step> and merge_artifacts."""

from inloop import FlowSpec, step


class BranchFlow(FlowSpec):
    @step
    def start(self):
        self.shared = "same"
        self.x = 0
        self.next(self.a, self.b)

    @step
    def a(self):
        self.x = 1
        self.only_a = "A"
        self.next(self.join)

    @step
    def b(self):
        self.x = 2
        self.next(self.b2)

    @step
    def b2(self):
        self.x += 10
        self.next(self.join)

    @step
    def join(self, inputs):
        self.from_a = inputs.a.x
        self.from_b = inputs.b2.x
        self.xs = sorted(inp.x for inp in inputs)
        self.merge_artifacts(inputs, exclude=["x"])
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BranchFlow()
