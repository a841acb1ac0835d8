"""A fan-out of many trivial tasks and their join: measures per-task overhead."""

from metaflow import FlowSpec, Parameter, step


class ForeachFlow(FlowSpec):
    """Start, a foreach over `tasks` trivial tasks, a join, end."""

    tasks = Parameter("tasks", default=1000, help="How many tasks the foreach fans out.")

    @step
    def start(self):
        self.items = list(range(self.tasks))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.doubled = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(task.doubled for task in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)


if __name__ == "__main__":
    ForeachFlow()
