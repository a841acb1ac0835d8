"""Foreach, nested foreach and joins."""

from inloop import FlowSpec, Parameter, step


class ForeachFlow(FlowSpec):
    n = Parameter("n", default=5)

    @step
    def start(self):
        self.items = list(range(self.n))
        self.next(self.square, foreach="items")

    @step
    def square(self):
        self.value = self.input * self.input
        self.my_index = self.index
        self.letters = ["a", "b"]
        self.next(self.inner, foreach="letters")

    @step
    def inner(self):
        self.tag = f"{self.value}{self.input}"
        self.stack = self.foreach_stack()
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.tags = [inp.tag for inp in inputs]
        self.merge_artifacts(inputs, include=["value", "my_index"])
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [inp.value for inp in inputs]
        self.indexes = [inp.my_index for inp in inputs]
        self.all_tags = [t for inp in inputs for t in inp.tags]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ForeachFlow()
