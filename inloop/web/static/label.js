/* The labeling page: one item at a time, answered by keyboard, never waiting on the server.
 *
 * A few leases are kept ahead (POST /next {n}); answering shows the next one at
 * once and sends the annotation in the background, in order. Keys: a class key
 * labels, "s" or Space skips, "u" or Backspace gives the last answer back
 * (POST /undo). The page config names the project, its classes and their keys.
 * In a multi-label project (cfg.multi) a class key toggles that class and Enter
 * sends the chosen set as {labels: [...]} (none chosen: none of them apply).
 * An item's note (why it is in the queue, e.g. a served request the models
 * disagreed on) shows above it; it is user data, so it is only ever set as text.
 */
"use strict";

(function () {
  const cfg = inloop.config();
  const api = inloop.api("/api/projects/" + encodeURIComponent(cfg.project));
  const itemBox = document.getElementById("item");
  const suggestionBox = document.getElementById("suggestion");
  const noteBox = document.getElementById("note");
  const noteText = document.getElementById("note-text");
  const keyToLabel = new Map(cfg.classes.filter((c) => c.key).map((c) => [c.key, c.name]));
  const multi = Boolean(cfg.multi);
  const chosen = new Set(); // multi-label: the classes toggled on for the item on screen

  function setChosen(names) {
    chosen.clear();
    for (const name of names) chosen.add(name);
    document.querySelectorAll(".class-btn").forEach((b) => {
      const on = chosen.has(b.dataset.label);
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", String(on));
    });
  }

  function toggle(name) {
    if (!current) return;
    const names = new Set(chosen);
    if (names.has(name)) names.delete(name);
    else names.add(name);
    setChosen(names);
  }

  function submitChosen() {
    if (!current) return;
    answer(cfg.classes.map((c) => c.name).filter((name) => chosen.has(name)));
  }

  let current = null; // the lease on screen
  const ahead = []; // leases fetched and waiting
  const inFlight = new Set(); // item ids answered whose annotation is still being sent
  // Item ids answered on this page: /next may still list one whose answer it has not seen.
  const done = new Set();
  const answered = []; // this session's answers, newest last: {itemId, label}
  let fetching = null;
  let writes = Promise.resolve();
  let pendingWrites = 0;
  let shownAt = Date.now();
  let sessionCount = 0;
  const sessionStart = Date.now();

  function setPending(delta) {
    pendingWrites += delta;
    document.body.dataset.pending = String(pendingWrites);
  }

  function held() {
    const ids = new Set(ahead.map((lease) => lease.item.id));
    if (current) ids.add(current.item.id);
    return ids;
  }

  function showNote(note, count) {
    // An input served again and again is one item; its count says how often it came.
    const times = count > 1 ? ` (this input came ${count} times)` : "";
    noteText.textContent = note ? note + times : "";
    noteBox.hidden = !note;
  }

  function show(lease) {
    current = lease;
    shownAt = Date.now();
    if (multi) setChosen([]);
    document.querySelectorAll(".class-btn.suggested").forEach((b) => b.classList.remove("suggested"));
    if (!lease) {
      itemBox.replaceChildren();
      itemBox.dataset.itemId = "";
      const message = fetching ? "Loading…" : "The queue is empty: nothing left for you to label.";
      itemBox.appendChild(inloop.el("p", { class: "hint", id: "empty" }, message));
      suggestionBox.hidden = true;
      showNote(null);
      return;
    }
    inloop.renderItem(itemBox, lease.item);
    showNote(lease.item.note, lease.item.count);
    const suggestion = lease.suggestion;
    if (suggestion && suggestion.label !== null && suggestion.label !== undefined) {
      const pct =
        typeof suggestion.confidence === "number"
          ? ` (${Math.round(suggestion.confidence * 100)}%)`
          : "";
      suggestionBox.textContent = `Model suggests: ${suggestion.label}${pct}`;
      suggestionBox.hidden = false;
      document
        .querySelectorAll(".class-btn")
        .forEach((b) => b.dataset.label === suggestion.label && b.classList.add("suggested"));
    } else {
      suggestionBox.hidden = true;
    }
  }

  function updateCounters() {
    document.getElementById("session-count").textContent = String(sessionCount);
    document.getElementById("throughput").textContent = inloop.perMinute(sessionCount, sessionStart);
    document.getElementById("queue-state").textContent = `${ahead.length} ready`;
  }

  // One stats request at a time; a refresh asked for meanwhile runs once it is done.
  let statsBusy = false;
  let statsAgain = false;
  async function refreshStats() {
    if (statsBusy) {
      statsAgain = true;
      return;
    }
    statsBusy = true;
    try {
      do {
        statsAgain = false;
        const stats = await api.get("/stats");
        const progress = document.getElementById("progress");
        progress.textContent = `${stats.complete} / ${stats.items}`;
        progress.dataset.complete = stats.complete;
        progress.dataset.items = stats.items;
      } while (statsAgain);
    } catch (err) {
      inloop.showError(err.message);
    } finally {
      statsBusy = false;
    }
  }

  /* Keep cfg.prefetch leases waiting behind the one on screen. */
  function topUp() {
    if (fetching || ahead.length >= cfg.prefetch) return fetching;
    // /next returns the caller's live leases first, so ask for all we hold plus what we want.
    const mine = held().size + inFlight.size;
    const n = Math.min(50, mine + cfg.prefetch - ahead.length);
    fetching = api
      .post("/next", { n })
      .then((body) => {
        const have = held();
        for (const lease of body.leases) {
          const id = lease.item.id;
          if (have.has(id) || inFlight.has(id) || done.has(id)) continue;
          ahead.push(lease);
          have.add(id);
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

  function answer(label) {
    if (!current) return;
    const lease = current;
    const itemId = lease.item.id;
    const seconds = (Date.now() - shownAt) / 1000;
    inFlight.add(itemId);
    done.add(itemId);
    answered.push({ itemId, label });
    if (label !== null) sessionCount += 1;
    const next = ahead.shift() || null;
    if (!next) topUp();
    show(next);
    updateCounters();
    setPending(1);
    writes = writes
      .then(() =>
        api.post(
          "/annotations",
          multi ? { item_id: itemId, labels: label, seconds } : { item_id: itemId, label, seconds },
        ),
      )
      .then(() => inloop.showError(""))
      .catch((err) => {
        inloop.showError(`Item ${lease.item.external_id} was not saved: ${err.message}`);
        done.delete(itemId); // its lease is still live: let /next hand it back
        const index = answered.findIndex((a) => a.itemId === itemId);
        if (index >= 0) answered.splice(index, 1);
        if (label !== null) sessionCount = Math.max(0, sessionCount - 1);
      })
      .finally(() => {
        inFlight.delete(itemId);
        setPending(-1);
        updateCounters();
        refreshStats();
      });
    topUp();
  }

  function undo() {
    setPending(1);
    writes = writes
      .then(() => api.post("/undo"))
      .then((body) => {
        if (!body || !body.lease) {
          inloop.showError("Nothing to undo: you have not answered an item yet.");
          return;
        }
        inloop.showError("");
        if (current && current.item.id === body.lease.item.id) {
          inloop.showError("Only the last answer can be undone; answer this item again.");
          return;
        }
        const last = answered.pop();
        if (last && last.label !== null) sessionCount = Math.max(0, sessionCount - 1);
        if (current) ahead.unshift(current);
        done.delete(body.lease.item.id);
        show(body.lease);
      })
      .catch((err) => inloop.showError(`Undo failed: ${err.message}`))
      .finally(() => {
        setPending(-1);
        updateCounters();
        refreshStats();
      });
  }

  document.querySelectorAll(".class-btn").forEach((button) => {
    inloop.onClick(button, () => {
      if (multi) toggle(button.dataset.label);
      else answer(button.dataset.label);
    });
  });
  const buttons = [["skip", () => answer(null)], ["undo", undo]];
  if (multi) buttons.push(["submit", submitChosen]);
  for (const [id, action] of buttons) inloop.onClick(document.getElementById(id), action);

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (inloop.typingInField(event)) return;
    const key = event.key;
    if (keyToLabel.has(key)) {
      if (multi) toggle(keyToLabel.get(key));
      else answer(keyToLabel.get(key));
    } else if (multi && key === "Enter") {
      submitChosen();
    } else if (key === " " || key === "s") {
      answer(null);
    } else if (key === "Backspace" || key === "u") {
      undo();
    } else {
      return;
    }
    event.preventDefault();
  });

  setPending(0);
  setInterval(updateCounters, 5000);
  refreshStats();
  topUp();
})();
