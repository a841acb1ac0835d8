"""Retry, catch, timeout, environment and a worker killed by SIGKILL."""

import os
import signal
import time

from inloop import (
    FlowSpec,
    Parameter,
    catch,
    current,
    environment,
    retry,
    step,
    timeout,
)


class RobustFlow(FlowSpec):
    mode = Parameter("mode", default="ok", help="ok, flaky, crash, kill, hang, stubborn, killonce")

    @step
    def start(self):
        self.next(self.work)

    @retry(times=2, minutes_between_retries=0)
    @environment(vars={"ROBUST_VAR": "set-by-decorator"})
    @step
    def work(self):
        self.env_value = os.environ.get("ROBUST_VAR")
        self.attempts_seen = current.retry_count
        if self.mode == "flaky" and current.retry_count < 2:
            raise RuntimeError(f"flaky failure on attempt {current.retry_count}")
        if self.mode == "killonce" and current.retry_count == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        self.next(self.guarded)

    @catch(var="problem", print_exception=False)
    @timeout(seconds=1)
    @step
    def guarded(self):
        self.problem = None
        if self.mode == "crash":
            raise ValueError("caught me")
        if self.mode == "hang":
            time.sleep(30)
        if self.mode == "stubborn":
            # Like a hang inside C code: the step's own alarm cannot interrupt it.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(30)
        self.next(self.end)

    @step
    def end(self):
        if self.mode == "kill" and os.environ.get("INLOOP_TEST_KILL"):
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    RobustFlow()
