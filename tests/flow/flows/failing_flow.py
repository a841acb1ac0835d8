"""Fails in `middle` unless INLOOP_TEST_FIX is set; used for resume tests."""

import os

from inloop import FlowSpec, Parameter, step


class FailingFlow(FlowSpec):
    width = Parameter("width", default=3)

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        if self.input == 1 and not os.environ.get("INLOOP_TEST_FIX"):
            raise ValueError("item 1 is broken")
        self.out = self.input * 10
        self.next(self.join)

    @step
    def join(self, inputs):
        self.outs = [inp.out for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailingFlow()
