"""A step that asks for a GPU."""

from inloop import FlowSpec, resources, step


class GpuFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)

    @resources(gpu=1)
    @step
    def train(self):
        self.trained = True
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GpuFlow()
