"""A small fan-out that records where each task ran."""

import os

from inloop import FlowSpec, resources, step


class DaskFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(6))
        self.next(self.work, foreach="items")

    @resources(cpu=1, memory=100)
    @step
    def work(self):
        self.pid = os.getpid()
        self.out = self.input + 100
        self.next(self.join)

    @step
    def join(self, inputs):
        self.outs = [inp.out for inp in inputs]
        self.pids = sorted({inp.pid for inp in inputs})
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskFlow()
