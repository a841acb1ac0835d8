/* The audit and review pages: one flagged item at a time, one keystroke per decision.
 *
 * "k" or Enter keeps the given label; a class key changes it to that class (the
 * given class's own key counts as keep); "s" or Space leaves it for later.
 * Decisions go to POST /api/projects/{name}/reviews/{id}/decision in the
 * background, in order, while the next review is shown at once.
 */
"use strict";

(function () {
  const cfg = inloop.config();
  const base = "/api/projects/" + encodeURIComponent(cfg.project);
  const api = inloop.api(base);
  const itemBox = document.getElementById("item");
  const keyToLabel = new Map(cfg.classes.filter((c) => c.key).map((c) => [c.key, c.name]));

  let current = null;
  const ahead = [];
  const decided = new Set(); // review ids decided (or left for later) on this page
  let fetching = null;
  let writes = Promise.resolve();
  let pendingWrites = 0;
  let sessionCount = 0;
  const sessionStart = Date.now();

  function setPending(delta) {
    pendingWrites += delta;
    document.body.dataset.pending = String(pendingWrites);
  }

  function text(id, value) {
    document.getElementById(id).textContent = value === null || value === undefined ? "–" : value;
  }

  function show(review) {
    current = review;
    const verdict = document.getElementById("verdict");
    document.querySelectorAll(".class-btn.suggested, .class-btn.given").forEach((b) => {
      b.classList.remove("suggested", "given");
    });
    if (!review) {
      itemBox.replaceChildren();
      itemBox.dataset.itemId = "";
      itemBox.dataset.reviewId = "";
      const message = fetching ? "Loading…" : "Nothing left to review.";
      itemBox.appendChild(inloop.el("p", { class: "hint", id: "empty" }, message));
      verdict.hidden = true;
      return;
    }
    inloop.renderItem(itemBox, review.item);
    itemBox.dataset.reviewId = review.id;
    verdict.hidden = false;
    text("given", Array.isArray(review.given) ? review.given.join(", ") : review.given);
    text("suggested", review.suggested);
    text(
      "confidence",
      typeof review.confidence === "number" ? `${Math.round(review.confidence * 100)}%` : null
    );
    text("reason", review.reason);
    const note = review.item.note; // user data: text only
    document.getElementById("item-note").textContent = note || "";
    document.getElementById("note-row").hidden = !note;
    document.querySelectorAll(".class-btn").forEach((b) => {
      if (b.dataset.label === review.suggested) b.classList.add("suggested");
      if (b.dataset.label === review.given) b.classList.add("given");
    });
  }

  function updateCounters() {
    text("session-count", String(sessionCount));
    text("throughput", inloop.perMinute(sessionCount, sessionStart));
    text("remaining", String(ahead.length + (current ? 1 : 0)));
  }

  function refill() {
    if (fetching || ahead.length >= 5) return fetching;
    const query = `?kind=${encodeURIComponent(cfg.kind)}&limit=50`;
    fetching = api
      .get("/reviews" + query)
      .then((body) => {
        const have = new Set(ahead.map((r) => r.id));
        if (current) have.add(current.id);
        for (const review of body.reviews) {
          if (!have.has(review.id) && !decided.has(review.id)) ahead.push(review);
        }
      })
      .catch((err) => inloop.showError(err.message))
      .finally(() => {
        fetching = null;
        if (!current) show(ahead.shift() || null);
        updateCounters();
      });
    return fetching;
  }

  function next() {
    const review = ahead.shift() || null;
    if (!review) refill();
    show(review);
    updateCounters();
    refill();
  }

  function decide(decision, label) {
    if (!current) return;
    const review = current;
    if (decision === "change" && label === review.given) decision = "keep";
    const body = decision === "keep" ? { decision: "keep", label: null } : { decision, label };
    decided.add(review.id);
    sessionCount += 1;
    next();
    setPending(1);
    writes = writes
      .then(() => api.post(`/reviews/${review.id}/decision`, body))
      .then(() => inloop.showError(""))
      .catch((err) => {
        inloop.showError(`The decision on item ${review.item.external_id} was not saved: ${err.message}`);
        sessionCount = Math.max(0, sessionCount - 1);
      })
      .finally(() => {
        setPending(-1);
        updateCounters();
      });
  }

  function later() {
    if (!current) return;
    decided.add(current.id); // not shown again on this page; it stays in the queue
    next();
  }

  document.querySelectorAll(".class-btn").forEach((button) => {
    inloop.onClick(button, () => decide("change", button.dataset.label));
  });
  for (const [id, action] of [["keep", () => decide("keep", null)], ["skip", later]]) {
    inloop.onClick(document.getElementById(id), action);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (inloop.typingInField(event)) return;
    const key = event.key;
    if (keyToLabel.has(key)) {
      decide("change", keyToLabel.get(key));
    } else if (key === "k" || key === "Enter") {
      decide("keep", null);
    } else if (key === "s" || key === " ") {
      later();
    } else {
      return;
    }
    event.preventDefault();
  });

  setPending(0);
  setInterval(updateCounters, 5000);
  refill();
})();
