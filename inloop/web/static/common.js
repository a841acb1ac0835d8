/* Shared by the labeling and review pages: the API client and the item renderer.
 *
 * Every non-GET request carries the CSRF token the page embeds (meta csrf-token);
 * the session cookie travels by itself (same origin).
 *   const api = inloop.api("/api/projects/digits");
 *   api.post("/next", {n: 3}).then((body) => ...);
 */
"use strict";

window.inloop = (function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function request(method, url, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
      throw new ApiError(401, "Your session ended; sign in again.");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = { detail: text };
    }
    if (!response.ok) {
      let detail = data && data.detail !== undefined ? data.detail : response.statusText;
      if (typeof detail !== "string") detail = JSON.stringify(detail);
      throw new ApiError(response.status, detail);
    }
    return data;
  }

  function api(base) {
    return {
      get: (path) => request("GET", base + path),
      post: (path, body) => request("POST", base + path, body === undefined ? {} : body),
    };
  }

  function config() {
    return JSON.parse(document.getElementById("page-config").textContent);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function formatNumber(value) {
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? String(value) : value.toPrecision(4).replace(/\.?0+$/, "");
  }

  /* 64 features: an 8x8 grey image (ink dark on white), so digits are recognisable. */
  function featureGrid(values) {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const span = hi - lo || 1;
    const grid = el("div", { class: "grid8", title: "64 features as an 8x8 image" });
    values.forEach((value, index) => {
      const shade = Math.round(255 - ((value - lo) / span) * 255);
      const cell = el("span", { class: "px", "data-index": index });
      cell.style.background = `rgb(${shade},${shade},${shade})`;
      grid.appendChild(cell);
    });
    return grid;
  }

  function featureTable(values, names) {
    const table = el("table", { class: "features" });
    const head = el("tr");
    const row = el("tr");
    values.forEach((value, index) => {
      head.appendChild(el("th", {}, names && names[index] !== undefined ? names[index] : index));
      row.appendChild(el("td", {}, formatNumber(value)));
    });
    table.appendChild(head);
    table.appendChild(row);
    return table;
  }

  /* Render an item {kind, external_id, payload} into container. */
  function renderItem(container, item) {
    container.replaceChildren();
    const payload = item.payload || {};
    container.dataset.itemId = item.id;
    container.appendChild(el("div", { class: "external-id hint" }, item.external_id));
    if (item.kind === "image" || payload.url) {
      const img = el("img", { class: "payload-image", alt: item.external_id });
      img.src = payload.url || payload.image || "";
      container.appendChild(img);
    }
    if (Array.isArray(payload.features)) {
      const values = payload.features;
      container.appendChild(
        values.length === 64 && !payload.names
          ? featureGrid(values)
          : featureTable(values, payload.names || payload.columns)
      );
    }
    if (typeof payload.text === "string") {
      container.appendChild(el("p", { class: "payload-text" }, payload.text));
    }
    if (!container.querySelector(".payload-image, .grid8, .features, .payload-text")) {
      container.appendChild(el("pre", { class: "payload-raw" }, JSON.stringify(payload)));
    }
  }

  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  /* Keys typed into form fields belong to the field, not to the page. */
  function typingInField(event) {
    const target = event.target;
    return (
      target instanceof HTMLInputElement ||
      target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLElement && target.isContentEditable)
    );
  }

  /* Run `action` on a click; the button gives up focus first, since a focused button
     would answer again on Space or Enter. */
  function onClick(button, action) {
    button.addEventListener("click", () => {
      button.blur();
      action();
    });
  }

  /* Labels per minute since `since` (ms), or "–" before there is enough to say. */
  function perMinute(count, since) {
    const minutes = (Date.now() - since) / 60000;
    if (count < 1 || minutes <= 0) return "–";
    return (count / Math.max(minutes, 1 / 60)).toFixed(1);
  }

  return { ApiError, api, config, el, renderItem, showError, typingInField, onClick, perMinute };
})();
