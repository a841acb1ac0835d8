"""A large numpy array stored by one step and loaded by the next.

`mb` sets the array size (0 gives the no-array baseline run); `copies=2`
makes the second step store an equal copy of the array, which a
content-addressed store keeps once.
"""

import numpy as np
from metaflow import FlowSpec, Parameter, step


class ArrayFlow(FlowSpec):
    """start makes the array, load reads it (and optionally stores a copy), end."""

    mb = Parameter("mb", default=100, help="Array size in MiB of float64.")
    copies = Parameter("copies", default=1, help="1: store the array once; 2: also store a copy.")

    @step
    def start(self):
        length = self.mb * 1024 * 1024 // 8
        self.array = np.random.default_rng(0).random(length)
        self.next(self.load)

    @step
    def load(self):
        self.total = float(self.array.sum())
        if self.copies > 1:
            self.again = self.array.copy()
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)


if __name__ == "__main__":
    ArrayFlow()
