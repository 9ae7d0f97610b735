// The wasp dashboard: renders each snapshot of /v1/admin/events.
// Plain DOM, text only (never HTML from data). With [[tokens]] configured
// the page is opened as /ui?token=<admin token>; the token goes on to the
// stream, since EventSource cannot send an Authorization header.
"use strict";

(function () {
  const token = new URLSearchParams(location.search).get("token");
  const url = "/v1/admin/events" + (token ? "?token=" + encodeURIComponent(token) : "");
  const previous = new Map(); // "kind:name" -> {count, at}
  let updates = 0;
  let source = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else if (key === "title") node.title = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const num = (value, attrs) => el("td", Object.assign({ class: "num" }, attrs || {}), fmt(value));
  function fmt(n) {
    return typeof n === "number" ? n.toLocaleString("en-US") : String(n);
  }

  // Per-second rate of a counter since the last snapshot.
  function rate(key, count) {
    const now = performance.now();
    const last = previous.get(key);
    previous.set(key, { count, at: now });
    if (!last || now <= last.at || count < last.count) return "–";
    const perSecond = ((count - last.count) * 1000) / (now - last.at);
    return perSecond.toFixed(1);
  }

  function time(unix) {
    const d = new Date(unix * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function duration(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    const h = Math.floor(seconds / 3600);
    return h + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function fill(id, rows, columns, empty) {
    const body = document.querySelector("#" + id + " tbody");
    if (rows.length === 0) {
      body.replaceChildren(el("tr", { class: "empty" }, el("td", {}, empty)));
      body.firstChild.firstChild.colSpan = columns;
    } else {
      body.replaceChildren(...rows);
    }
  }

  function bar(part, whole) {
    const inner = el("span");
    inner.style.width = (whole > 0 ? Math.min(100, (100 * part) / whole) : 0) + "%";
    return el("span", { class: "bar" }, inner);
  }

  function tenantNames(snapshot) {
    const names = new Map();
    for (const c of snapshot.clusters) for (const t of c.tenants) names.set(t.id, t.name);
    return names;
  }

  function clusters(snapshot) {
    const rows = snapshot.clusters.map((c) => {
      const live = c.instances.filter((i) => i.live).length;
      const outstanding = c.instances.reduce((sum, i) => sum + i.outstanding, 0);
      const capacity = live * c.window;
      const dots = el("span", { class: "dots" },
        ...c.instances.map((i) => el("span", {
          class: "dot" + (!i.live ? " dead" : i.outstanding > 0 ? " busy" : ""),
          title: "instance " + i.index + ": " + i.handled + " handled, " + i.outstanding +
            " outstanding, " + i.traps + " traps, " + i.timeouts + " timeouts, " +
            i.replaced + " replaced",
        })));
      return el("tr", {
        "data-cluster": c.name, "data-requests": c.requests, "data-faults": c.faults,
        "data-live": live, "data-outstanding": outstanding,
      },
        el("td", { class: "name" }, c.name),
        el("td", {}, c.service + " " + c.version),
        el("td", { title: c.component + "\nsha256 " + c.sha256 },
          el("code", {}, c.sha256.slice(0, 12))),
        el("td", {}, c.tenants.map((t) => t.name).join(", ")),
        el("td", {}, live + " / " + c.instances.length + " live", dots),
        el("td", {}, bar(outstanding, capacity), outstanding + " / " + capacity),
        el("td", {}, bar(c.queue.depth, c.queue.capacity), c.queue.depth + " / " + c.queue.capacity),
        num(c.requests, { "data-field": "requests" }),
        num(rate("cluster:" + c.name, c.requests)),
        el("td", { class: "num" + (c.faults > 0 ? " bad" : "") }, fmt(c.faults)));
    });
    fill("clusters", rows, 10, "no cluster configured");
  }

  function captures(snapshot) {
    const rows = snapshot.captures.map((p) => {
      const errors = p.Errors + p.OperationErrors;
      return el("tr", {
        "data-capture": p.Name, "data-taken": p.Taken, "data-processed": p.Processed,
        "data-operations": p.Operations, "data-backlog": p.Backlog, "data-errors": errors,
      },
        el("td", { class: "name", title: p.Directory }, p.Name),
        el("td", {}, p.Adapter),
        el("td", { class: "muted" }, p.CodecName + " " + p.CodecVersion),
        num(p.Taken),
        num(p.Processed),
        num(p.Operations),
        num(rate("capture:" + p.Name, p.Operations)),
        num(p.Backlog),
        num(p.InFlight),
        num(p.WaitingForNode),
        el("td", {
          class: "num" + (errors > 0 ? " bad" : ""),
          title: p.Errors + " items refused, " + p.OperationErrors + " operations answered with an error",
        }, fmt(errors)));
    });
    fill("captures", rows, 11, "no capture point configured");
  }

  function nodes(snapshot) {
    const names = tenantNames(snapshot);
    const rows = snapshot.nodes.map((n) => el("tr", { "data-node": n.node_id },
      el("td", { class: "name", title: "session " + n.session }, n.node_id),
      el("td", {}, n.tenants.map((id) => (names.has(id) ? names.get(id) + " (" + id + ")" : id)).join(", ")),
      el("td", {}, n.media_types.join(", ")),
      num(n.window),
      num(n.operations_outstanding + n.esp_outstanding),
      num(n.operations_sent),
      num(n.esp_handled),
      el("td", {}, duration(n.connected_seconds))));
    fill("nodes", rows, 8, "no node connected");
  }

  function faults(snapshot) {
    const rows = snapshot.faults.map((f) => el("tr", { "data-fault": f.code },
      el("td", {}, time(f.at)),
      el("td", {}, f.cluster || "–"),
      el("td", { class: "bad" }, f.code),
      el("td", { class: "msg" }, f.message)));
    fill("faults", rows, 4, "no fault since the start");
  }

  function reloads(snapshot) {
    const rows = snapshot.reloads.slice().reverse().map((r) => {
      const changes = [];
      if (r.Changes.Started.length) changes.push("started " + r.Changes.Started.join(", "));
      if (r.Changes.Removed.length) changes.push("removed " + r.Changes.Removed.join(", "));
      if (r.Changes.Kept.length) changes.push("kept " + r.Changes.Kept.length);
      const why = r.Ok ? changes.join("; ") || "no change" : r.Reason || "failed";
      const warnings = (r.Warnings || []).join("; ");
      return el("tr", { "data-reload": r.Id, "data-ok": r.Ok },
        el("td", {}, r.Id),
        el("td", {}, time(r.At)),
        el("td", {}, r.Trigger),
        el("td", { class: r.Ok ? "ok" : "bad" }, r.Ok ? "serving" : "refused"),
        el("td", { class: r.Ok ? "msg" : "msg reason" }, why + (warnings ? " (" + warnings + ")" : "")),
        el("td", { class: "num" }, r.TookMs + " ms"));
    });
    fill("reloads", rows, 6, "no reload since the start");
  }

  function status(state, text) {
    const node = document.getElementById("status");
    node.className = "status " + state;
    node.dataset.state = state;
    node.textContent = text;
  }

  function render(snapshot) {
    clusters(snapshot);
    captures(snapshot);
    nodes(snapshot);
    faults(snapshot);
    reloads(snapshot);
    updates += 1;
    const updated = document.getElementById("updated");
    updated.dataset.updates = updates;
    updated.textContent = "updated " + time(snapshot.at);
  }

  function connect() {
    source = new EventSource(url);
    source.addEventListener("open", () => status("live", "live"));
    source.addEventListener("snapshot", (event) => {
      status("live", "live");
      render(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (a token missing, too many dashboards) or the host is
        // gone: try again a little later.
        status("refused", token === null ? "no stream (token needed?)" : "no stream");
        source.close();
        setTimeout(connect, 5000);
      } else {
        status("reconnecting", "reconnecting…");
      }
    });
  }

  connect();
})();
