"""Serve the digits models behind the rendezvous: champion, challenger, canary, decoy.

Run after ``examples/digits_flow.py run`` (``make demo`` runs both). It

1. registers models with their lineage: the flow's best model (the champion),
   its runner-up (a challenger) and an older model trained on 150 images (the
   canary), plus a majority-class rule as the fallback;
2. starts the inloop server (in this process, on a free port) and sends it
   the flow's held-out digits over HTTP, one request per digit;
3. attaches the true labels as feedback, so every model is judged on the very
   requests the champion answered;
4. shows the requests routed to the ``digits-review`` labeling queue because
   the models disagreed or the champion was unsure;
5. promotes the challenger, shows the next answer comes from it, and rolls back.

    python examples/serve_demo.py
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

SERVICE = "digits"
REVIEW_PROJECT = "digits-review"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def register_models() -> dict[str, str]:
    """Register the canary, champion, challenger and fallback; their references."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from inloop import Flow
    from inloop.serve import majority_class_from, register

    run = Flow("DigitsFlow").latest_successful_run
    if run is None or run.data is None:
        sys.exit("No successful DigitsFlow run: run `python examples/digits_flow.py run` first.")
    data = run.data
    join = run["join"].task
    assert join is not None
    trained = sorted(run["train"].tasks(), key=lambda t: -t.data.accuracy)
    canary = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    canary.fit(data.X_train[:150], data.y_train[:150])
    refs = {
        "canary": register(
            canary,
            name="digits-old",
            metrics={"accuracy": float(canary.score(data.X_test, data.y_test))},
            note="last quarter's model, trained on 150 images",
        ).ref,
        "champion": register(
            join["best_model"],
            name="digits",
            metrics={"accuracy": data.best_accuracy},
        ).ref,
        "challenger": register(
            trained[1]["model"], name="digits", metrics={"accuracy": trained[1].data.accuracy}
        ).ref,
        "fallback": register(majority_class_from(data.y_train), name="digits-majority").ref,
    }
    return refs


def set_up_service(refs: dict[str, str]) -> None:
    from inloop.label import LabelNotFoundError, create_project, get_project
    from inloop.serve import ServiceNotFoundError, create_service, set_policy

    try:
        get_project(REVIEW_PROJECT)
    except LabelNotFoundError:
        create_project(
            REVIEW_PROJECT,
            [str(d) for d in range(10)],
            instructions="Production digits the models disagreed on: which digit is it?",
        )
    policy = {
        "champion": refs["champion"],
        "challengers": [refs["challenger"]],
        "canary": refs["canary"],
        "fallback": refs["fallback"],
        "schedule": {"deadline_ms": 50},
        "review": {"project": REVIEW_PROJECT, "margin_threshold": 0.3, "per_hour_budget": 40},
    }
    try:
        set_policy(SERVICE, policy, by="demo", reason="the demo ran again: new models")
    except ServiceNotFoundError:
        create_service(SERVICE, policy, created_by="demo", reason="launch the digits service")


def start_server(port: int) -> Any:
    import uvicorn

    from inloop.web import create_app

    app = create_app(learners=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server


def predict(client: Any, instance: list[float]) -> dict[str, Any]:
    """One predict call; a 503 (the server refused it while behind) is retried as it asks.

    The demo runs the server in a thread of its own process: while this thread
    evaluates or replays, the server's event loop waits for the GIL and may
    read as overloaded for a moment.
    """
    for _ in range(5):
        answer = client.post(f"/v1/services/{SERVICE}/predict", json={"instance": instance})
        if answer.status_code != 503:
            break
        time.sleep(float(answer.headers.get("Retry-After", "1")))
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def token(name: str, role: str) -> str:
    from inloop.web.auth import create_token, create_user, get_user

    if get_user(name) is None:
        return create_user(name, role)
    return create_token(name)


def main() -> int:
    import httpx
    from rich.console import Console
    from rich.table import Table

    from inloop import Flow
    from inloop.serve import evaluate, replay, routed_items

    console = Console(highlight=False)
    started = time.perf_counter()
    refs = register_models()
    set_up_service(refs)
    console.print(
        f"Service {SERVICE!r}: champion {refs['champion']} (the flow's best), challenger "
        f"{refs['challenger']}, canary {refs['canary']}, fallback {refs['fallback']}; "
        "decoy on, deadline 50 ms."
    )
    run = Flow("DigitsFlow").latest_successful_run
    assert run is not None and run.data is not None
    X_test, y_test = run.data.X_test, run.data.y_test
    port = free_port()
    server = start_server(port)
    base = f"http://127.0.0.1:{port}"
    app_token, sci_token = token("demo-app", "annotator"), token("demo-scientist", "scientist")
    # Ground truth has owners: feedback needs a reviewer (the policy's default feedback_role).
    reviewer = {"Authorization": f"Bearer {token('demo-reviewer', 'reviewer')}"}
    answers = []
    sent_from = datetime.now(UTC)  # the archive window of this demo's requests
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {app_token}"}) as client:
        for x in X_test:
            answers.append(predict(client, x.tolist()))
        latencies = np.array([a["latency_ms"] for a in answers])
        table = Table(title=f"First answers of {len(answers)} held-out digits", show_lines=False)
        for column in ("request", "prediction", "p", "model", "fallback", "ms", "truth"):
            table.add_column(column)
        for answer, truth in list(zip(answers, y_test, strict=True))[:6]:
            table.add_row(
                answer["request_id"][:8],
                str(answer["prediction"]),
                f"{max(answer['probabilities']):.2f}",
                answer["model"],
                "yes" if answer["fallback_used"] else "no",
                f"{answer['latency_ms']:.2f}",
                str(truth),
            )
        console.print(table)
        console.print(
            f"Rendezvous latency: p50 {np.percentile(latencies, 50):.2f} ms, "
            f"p99 {np.percentile(latencies, 99):.2f} ms; "
            f"{sum(a['fallback_used'] for a in answers)} fallback answers."
        )

        # The truth arrives later: attach it by request id; every model is judged on it.
        for answer, truth in zip(answers, y_test, strict=True):
            client.post(
                f"/v1/services/{SERVICE}/feedback",
                json={"request_id": answer["request_id"], "label": int(truth)},
                headers=reviewer,
            ).raise_for_status()
        evaluation = Table(title="Every model on the same requests (feedback = true labels)")
        for column in ("model", "role", "labeled", "accuracy"):
            evaluation.add_column(column)
        for row in evaluate(SERVICE, since=sent_from):
            evaluation.add_row(
                row.model, ", ".join(row.roles), str(row.n_labeled), f"{row.accuracy:.3f}"
            )
        console.print(evaluation)

        routed = routed_items(SERVICE, limit=1000)
        recent = {a["request_id"] for a in answers}
        mine = [r for r in routed if r.request_id in recent]
        if mine:
            console.print(
                f"{len(mine)} requests went to the labeling queue {REVIEW_PROJECT!r} (budget 40 "
                "an hour) because the models disagreed or the champion was unsure, for example:"
            )
        else:
            console.print(
                f"No request went to the labeling queue {REVIEW_PROJECT!r} this time: an earlier "
                "run used this hour's budget of 40."
            )
        for item in mine[:3]:
            console.print(f"  item {item.item_id}: {item.reason}")

        report = replay(SERVICE, refs["challenger"], since=sent_from)
        console.print(
            f"Replay of {refs['challenger']} on the archived inputs: agrees with the champion "
            f"on {report.agreement:.1%} of {report.n_instances} digits."
        )

        # Promotion and rollback are policy changes; the next request follows them.
        sci = {"Authorization": f"Bearer {sci_token}"}
        promoted = client.post(
            f"/v1/services/{SERVICE}/promote",
            json={"model": refs["challenger"], "reason": "demo: try the runner-up"},
            headers=sci,
        ).json()
        after = predict(client, X_test[0].tolist())
        console.print(
            f"Promoted {refs['challenger']} (revision {promoted['revision']}, by "
            f"{promoted['created_by']}): the next answer came from {after['model']}."
        )
        back = client.post(
            f"/v1/services/{SERVICE}/rollback",
            json={"reason": "demo: back to the flow's best"},
            headers=sci,
        ).json()
        after = predict(client, X_test[0].tolist())
        console.print(
            f"Rolled back (revision {back['revision']} restores {back['restored_revision']}): "
            f"the next answer came from {after['model']}."
        )
    server.should_exit = True
    time.sleep(0.3)
    console.print(
        f"\nServing demo took {time.perf_counter() - started:.1f} s. From the shell:\n"
        f"  inloop serve show {SERVICE}\n"
        f"  inloop serve promote {SERVICE} {refs['challenger']} --reason '...'\n"
        f"  inloop serve rollback {SERVICE} --reason '...'\n"
        f"  inloop serve replay {SERVICE} --model {refs['challenger']} --since 1h\n"
        f"  inloop server   # then label the disagreements at /projects/{REVIEW_PROJECT}/label"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
