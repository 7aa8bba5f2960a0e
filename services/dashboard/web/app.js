// Fulcrum dashboard: polls /ui/api/state and redraws. Everything is built
// with DOM calls and textContent (no HTML from data), charts are inline SVG.
"use strict";
(function () {
  const POLL_MS = 2000;
  let csrf = "";
  let timer = null;

  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k === "text") e.textContent = v;
      else e[k] = v;
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  function table(head, rows, numeric) {
    const t = el("table");
    const tr = el("tr");
    head.forEach((h, i) => tr.append(el("th", { text: h, class: numeric && numeric.includes(i) ? "num" : "" })));
    t.append(el("thead", {}, tr));
    const tb = el("tbody");
    rows.forEach((r) => tb.append(r));
    t.append(tb);
    return t;
  }
  function row(cells, attrs, numeric) {
    const tr = el("tr", attrs || {});
    cells.forEach((c, i) => {
      const td = el("td", { class: numeric && numeric.includes(i) ? "num" : "" });
      if (c instanceof Node) td.append(c); else td.textContent = c === undefined || c === null ? "" : String(c);
      tr.append(td);
    });
    return tr;
  }
  function bytes(v) {
    if (v === undefined || v === null) return "-";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + u[i];
  }
  function rate(v, digits) { return v === undefined || v === null ? "-" : v.toFixed(digits === undefined ? 1 : digits); }
  function dur(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }
  function healthSpan(h) {
    const cls = h === "up" ? "good" : h === "down" ? "bad" : "muted";
    return el("span", { class: "health " + cls, text: h || "-" });
  }
  function ago(t) {
    if (!t) return "";
    const s = (Date.now() - new Date(t).getTime()) / 1000;
    return s < 0 ? "" : Math.round(s) + " s ago";
  }

  async function call(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const err = new Error((data && data.error) || r.status + " " + r.statusText);
      err.status = r.status;
      throw err;
    }
    return data;
  }

  function showLogin(msg) {
    if (timer) { clearTimeout(timer); timer = null; }
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login-box").hidden = false;
    $("login-error").textContent = msg || "";
    $("live").textContent = "";
  }

  async function poll() {
    timer = null;
    try {
      const st = await call("GET", "api/state");
      csrf = st.csrf;
      $("login-box").hidden = true;
      $("app").hidden = false;
      render(st);
      $("login-box").hidden = true;
      $("app").hidden = false;
      $("logout").hidden = false;
      $("live").textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (e.status === 401) { showLogin(""); return; }
      $("live").textContent = "update failed: " + e.message;
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function say(msg, bad) {
    const m = $("message");
    m.textContent = msg;
    m.className = bad ? "bad" : "good";
  }

  async function act(path, body, confirmText) {
    if (confirmText && !window.confirm(confirmText)) return;
    try {
      const r = await call("POST", path, body);
      say(r.message || "done", false);
    } catch (e) {
      if (e.status === 401) { showLogin("session expired: log in again"); return; }
      say(e.message, true);
    }
    if (timer) clearTimeout(timer);
    poll();
  }

  function chart(label, points, pick, fmt) {
    const w = 300, h = 80;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    let maxV = 0;
    const vals = points.map(pick);
    vals.forEach((v) => { if (v > maxV) maxV = v; });
    const span = 15 * 60 * 1000;
    const now = points.length ? new Date(points[points.length - 1].time).getTime() : Date.now();
    const pts = points.map((p, i) => {
      const x = w - (now - new Date(p.time).getTime()) / span * w;
      const y = h - 2 - (maxV ? vals[i] / maxV * (h - 6) : 0);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
    const last = vals.length ? vals[vals.length - 1] : null;
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = label + " over the last 15 minutes, peak " + fmt(maxV);
    svg.append(title);
    return el("div", { class: "chart" }, el("div", { class: "label", text: label + ": now " + (last === null ? "-" : fmt(last)) + ", peak " + fmt(maxV) + " (15 min)" }), svg);
  }

  function renderVS(st) {
    const box = $("vs-body");
    box.replaceChildren();
    if (!(st.virtual_servers || []).length) box.append(el("p", { class: "muted", text: "no virtual servers in the kernel" }));
    for (const vs of st.virtual_servers || []) {
      const name = (vs.name ? vs.name + " " : "") + vs.protocol + " " + vs.address;
      const r = vs.rate || {};
      const head = el("h3", { text: name });
      const facts = el("p", { class: "muted", text: [vs.mode, vs.scheduler, vs.pool ? "pool " + vs.pool : "", vs.persistent ? "persistent " + vs.persistent + " s" : ""].filter(Boolean).join(" · ") +
        " · " + rate(r.conns) + " conn/s · in " + bytes(r.bytes_in) + "/s · out " + bytes(r.bytes_out) + "/s · " + vs.stats.conns + " conns total" });
      const rows = (vs.pool_members || []).map((pm) => {
        const k = pm.kernel || null;
        const kr = (k && k.rate) || {};
        const check = pm.check && pm.check.last_check ? (pm.check.last_ok ? "ok: " : "failed: ") + (pm.check.last_reason || "") + " (" + ago(pm.check.last_check) + ")" : (pm.monitor ? "not checked yet" : "no monitor");
        const btns = el("span", {},
          pm.disabled ? el("button", { text: "Enable", "data-action": "enable", onclick: () => act("api/member", { pool: pm.pool, member: pm.member, action: "enable" }) })
            : el("button", { text: "Disable (drain)", class: "danger", "data-action": "disable",
              onclick: () => act("api/member", { pool: pm.pool, member: pm.member, action: "disable" }, "Disable " + pm.member + " in pool " + pm.pool + "? Weight 0: new connections go elsewhere, existing ones drain.") }));
        return row([pm.member, healthSpan(pm.health), pm.disabled ? el("span", { class: "warn", text: "disabled" }) : "enabled", el("span", { class: "check", text: check }),
          k ? k.weight : "not in IPVS", k ? k.active : "-", k ? k.inactive : "-", rate(kr.conns), rate(kr.packets_in, 0) + " / " + rate(kr.packets_out, 0),
          bytes(kr.bytes_in) + " / " + bytes(kr.bytes_out), pm.pool ? btns : ""],
          { "data-member": pm.pool + "/" + pm.member, "data-weight": k ? String(k.weight) : "", "data-health": pm.health || "" }, [4, 5, 6, 7]);
      });
      const charts = el("div", { class: "charts" },
        chart("conn/s", vs.history || [], (p) => p.conns, (v) => v.toFixed(1)),
        chart("bytes/s (in+out)", vs.history || [], (p) => p.bytes_in + p.bytes_out, (v) => bytes(v) + "/s"));
      box.append(el("div", { class: "vs", "data-vs": vs.protocol + " " + vs.address }, head, facts,
        table(["Member", "Health", "Admin", "Last check", "Weight", "Active", "Inactive", "conn/s", "pkt/s in/out", "bytes/s in/out", ""], rows, [4, 5, 6, 7]), charts));
    }
  }

  function render(st) {
    const n = st.node;
    $("node-name").textContent = n.hostname;
    const dl = $("node-facts");
    dl.replaceChildren();
    const vrrpSummary = st.vrrp && st.vrrp.enabled ? (st.vrrp.instances || []).map((i) => i.instance + " " + i.state + (i.master ? " (master " + i.master + ")" : "")).join(", ") : "standalone";
    for (const [k, v] of [["Hostname", n.hostname], ["Version", n.version], ["Kernel", n.kernel], ["Uptime", dur(n.uptime_seconds)],
      ["Config", n.config_hash ? "sha256 " + n.config_hash : "-"], ["VRRP", vrrpSummary]]) {
      dl.append(el("dt", { text: k }), el("dd", { text: v }));
    }
    const errs = Object.entries(st.errors || {});
    if (errs.length) dl.append(el("dt", { text: "Not answering" }), el("dd", { class: "bad", text: errs.map(([k, v]) => k + ": " + v).join("; ") }));

    const vb = $("vrrp-body");
    vb.replaceChildren();
    if (st.vrrp && st.vrrp.enabled) {
      vb.append(table(["Instance", "VRID", "Family", "State", "Priority", "Master (peer)", "Transitions"],
        (st.vrrp.instances || []).map((i) => row([i.instance, i.vrid, i.family, el("span", { class: i.state === "MASTER" ? "good" : "", text: i.state }), i.priority, i.master || "-", i.transitions],
          { "data-instance": i.instance }))));
    } else vb.append(el("p", { class: "muted", text: "no VRRP instances (standalone node)" }));

    renderVS(st);

    const bb = $("bonds-body");
    bb.replaceChildren();
    const bonds = st.bonds || [];
    if (!bonds.length) bb.append(el("p", { class: "muted", text: "no bonds" }));
    else {
      const rows = [];
      for (const b of bonds) {
        for (const m of (b.members && b.members.length ? b.members : [null])) {
          rows.push(row([b.name, b.mode, (st.link_state || {})[b.name] || b.mii, m ? m.name : "-", m ? ((st.link_state || {})[m.name] || m.mii) : "-", m ? m.speed : "-", m ? m.link_failures : "-", m && b.active_member === m.name ? "active" : ""]));
        }
      }
      bb.append(table(["Bond", "Mode", "State", "Link", "Link state", "Speed", "Failures", ""], rows));
    }

    const sb = $("snat-body");
    sb.replaceChildren();
    const s = st.snat;
    if (!s || (!Object.keys(s.ipools || {}).length && !(s.rules || []).length && !Object.keys(s.local_address_pools || {}).length)) sb.append(el("p", { class: "muted", text: "nothing configured" }));
    else {
      const rows = [];
      for (const [k, v] of Object.entries(s.ipools || {})) rows.push(row(["SNAT IPool", k, v.join(", ")]));
      for (const r of s.rules || []) rows.push(row(["rule", r.source + " out " + r.out, "→ ipool " + r.ipool]));
      for (const [k, v] of Object.entries(s.local_address_pools || {})) rows.push(row(["FullNAT local addresses", k, v.join(", ")]));
      sb.append(table(["Kind", "Name", "Addresses"], rows));
    }

    const yb = $("sync-body");
    yb.replaceChildren();
    const y = st.sync;
    if (!y || !y.enabled) yb.append(el("p", { class: "muted", text: "off" + (y && y.last_error ? ": " + y.last_error : " (standalone node)") }));
    else {
      yb.append(el("p", { text: "role " + y.role + ", sync id " + y.sync_id + " on " + y.interface + " · " + y.conns_local + " local, " + y.conns_synced + " synced connections" + (y.last_error ? " · last error: " + y.last_error : "") }));
      yb.append(table(["Daemon", "Interface", "Sync ID", "Group", "Port"], (y.daemons || []).map((d) => row([d.state, d.interface, d.sync_id, d.group, d.port]))));
    }

    $("log-body").textContent = (st.log || []).map((l) => new Date(l.time).toLocaleTimeString() + " " + l.source + "| " + l.text).join("\n");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("login-button").disabled = true;
      try {
        const r = await call("POST", "login", { user: $("user").value, password: $("password").value });
        csrf = r.csrf;
        $("password").value = "";
        $("login-error").textContent = "";
        poll();
      } catch (e) {
        $("login-error").textContent = e.message;
      } finally {
        $("login-button").disabled = false;
      }
    });
    $("logout").addEventListener("click", async () => {
      try { await call("POST", "logout", {}); } catch (e) { /* the session is gone either way */ }
      csrf = "";
      showLogin("logged out");
    });
    $("ha-switchover").addEventListener("click", () => act("api/ha", { action: "switchover" }, "Hand VRRP mastership to the peer?"));
    $("ha-resume").addEventListener("click", () => act("api/ha", { action: "resume" }));
    let diffed = null; // {yaml, digest} of the diff on screen
    $("config-text").addEventListener("input", () => { diffed = null; $("config-apply").disabled = true; });
    $("config-diff").addEventListener("click", async () => {
      const yaml = $("config-text").value;
      const out = $("config-out");
      out.replaceChildren();
      diffed = null;
      $("config-apply").disabled = true;
      let d;
      try {
        d = await call("POST", "api/config/diff", { yaml });
      } catch (e) {
        if (e.status === 401) { showLogin("session expired: log in again"); return; }
        out.append(el("span", { class: "bad", text: e.message }));
        return;
      }
      out.append(el("div", { class: d.ok ? "" : "bad", text: d.message }));
      for (const e of d.errors || []) out.append(el("div", { class: "bad", text: e }));
      if (!d.ok) return;
      for (const sec of d.sections || []) {
        out.append(el("div", { text: "\n" + sec.title + (sec.live ? "" : " (at the next boot)") }));
        for (const l of sec.lines) out.append(el("div", { class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "chg", text: l }));
      }
      diffed = { yaml, digest: d.digest };
      $("config-apply").disabled = false;
    });
    $("config-apply").addEventListener("click", async () => {
      if (!diffed || !window.confirm("Apply the config whose diff is shown?")) return;
      const req = diffed;
      diffed = null;
      $("config-apply").disabled = true;
      await act("api/config/apply", req);
    });
    poll();
  });
})();
