"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("review-data").textContent);
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const LABELS = DATA.labels;
  const NAMES = { "core": "core", "spurious": "spurious", "noisy": "noisy labels", "not-a-failure": "not a failure" };
  const KEYS = { "1": "core", "2": "spurious", "3": "noisy", "4": "not-a-failure" };
  let state = { version: 0, annotations: {}, suggestions: {} };
  let current = 0;
  let queue = Promise.resolve();
  const cards = [];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + "%";
  const num = (v, d) => (v === null || v === undefined) ? "–" : Number(v).toPrecision(d || 3);

  function setStatus(text, kind) {
    const s = document.getElementById("status");
    s.textContent = text;
    s.className = kind || "";
  }

  async function api(method, path, body) {
    const opts = { method, headers: { "X-Failscope-Token": TOKEN }, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = { error: r.status + " " + r.statusText }; }
    return { status: r.status, data };
  }

  function card(s, i) {
    const c = el("section", { class: "slice", id: "slice-" + s.id, "data-slice": s.id, tabindex: "-1" });
    const status = el("span", { class: "badge" + (s.status === "weak" ? " weak" : ""), text: s.status });
    const label = el("span", { class: "badge label", "data-role": "label" });
    c.append(el("h2", {}, el("span", { class: "rank", text: "#" + (i + 1) }),
      document.createTextNode("class " + s.class_name + " · slice " + s.id), status, label));
    const m = el("dl", { class: "metrics" });
    const add = (k, v) => m.append(el("dt", { text: k }), el("dd", { text: v }));
    add("severity", s.errors + " errors in " + s.size + " members (fitting split)");
    add("error rate", pct(s.error_rate_in) + " inside vs " + pct(s.error_rate_out) + " in the rest of the class");
    add("support", "p = " + num(s.p_value, 2) + (s.cv_score === null ? "" : ", CV " + num(s.cv_score, 3)));
    add("slicer", s.slicer + ", rank " + s.rank + " in its class");
    if (s.confusion.length) add("predicted as", s.confusion.map((kv) => kv[0] + " ×" + kv[1]).join(", "));
    const left = el("div", {}, m);
    if (s.failure.length) {
      left.append(el("h3", { text: "captions (failure end)" }));
      const ol = el("ol", { class: "captions" });
      s.failure.forEach((t) => ol.append(el("li", { text: t })));
      left.append(ol);
    }
    if (s.success.length) left.append(el("h3", { text: "success end" }), el("p", { text: s.success.join(" · ") }));
    if (s.checks.length) {
      left.append(el("h3", { text: "caption checks" }));
      const t = el("table", { class: "checks" });
      t.append(el("tr", {}, el("th", { text: "caption" }), el("th", { text: "acc near it" }),
        el("th", { text: "class acc" }), el("th", { text: "p" }), el("th", { text: "" })));
      s.checks.forEach((k) => t.append(el("tr", {}, el("td", { text: k.text }), el("td", { text: pct(k.acc) }),
        el("td", { text: pct(k.class_acc) }), el("td", { text: num(k.p_value, 2) }),
        el("td", { text: k.confirmed ? "confirmed" : "not confirmed" }))));
      left.append(t);
    }
    const right = el("div", {}, el("h3", { text: "most inside members" }),
      el("div", { class: "mosaic", "data-role": "mosaic" }, el("span", { class: "saved", text: "loading…" })));
    if (s.has_attribution) right.append(el("h3", { text: "attributions" }), el("div", { "data-role": "attribution" }));
    c.append(el("div", { class: "cols" }, left, right));
    const buttons = el("div", { role: "group", "aria-label": "annotation" });
    LABELS.forEach((lab, j) => {
      const b = el("button", { type: "button", "data-label": lab, "aria-pressed": "false", text: (j + 1) + " " + NAMES[lab] });
      b.addEventListener("click", () => { select(i); choose(s.id, b.getAttribute("aria-pressed") === "true" ? null : lab); });
      buttons.append(b);
    });
    const note = el("textarea", { placeholder: "note (optional): what you see, why this label", "data-role": "note", rows: "2" });
    note.addEventListener("change", () => saveNote(s.id, note));
    note.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); saveNote(s.id, note); note.blur(); }
      if (ev.key === "Escape") note.blur();
    });
    const sugg = el("p", { class: "suggestion", "data-role": "suggestion", hidden: "" });
    const saved = el("p", { class: "saved", "data-role": "saved" });
    c.append(el("div", { class: "annotate" }, buttons, sugg, note, saved));
    c.addEventListener("click", () => select(i, false));
    return c;
  }

  function refresh() {
    let done = 0;
    DATA.slices.forEach((s, i) => {
      const c = cards[i];
      const a = state.annotations[s.id] || null;
      if (a) done++;
      c.querySelectorAll("button[data-label]").forEach((b) =>
        b.setAttribute("aria-pressed", String(!!a && a.label === b.dataset.label)));
      const lab = c.querySelector('[data-role="label"]');
      lab.textContent = a ? NAMES[a.label] : "not annotated";
      lab.className = "badge label" + (a ? " label-" + a.label : "");
      c.dataset.label = a ? a.label : "";
      const note = c.querySelector('[data-role="note"]');
      if (document.activeElement !== note) note.value = a && a.note ? a.note : "";
      c.querySelector('[data-role="saved"]').textContent = a ? "saved " + a.updated : "";
      const sg = c.querySelector('[data-role="suggestion"]');
      const sug = a ? null : state.suggestions[s.id];
      sg.replaceChildren();
      if (sug) {
        const near = sug.neighbours.map((n) => n[0] + " (" + n[1].toFixed(2) + ")").join(", ");
        const why = sug.reason ? sug.reason : "like " + near;
        const acc = el("button", { type: "button", "data-role": "accept", text: "a accept" });
        acc.addEventListener("click", () => { select(i); accept(s.id); });
        sg.append(document.createTextNode("suggested: " + NAMES[sug.label] + " (" + why + "), not saved"), acc);
        sg.hidden = false;
      } else sg.hidden = true;
    });
    document.getElementById("progress").textContent =
      done + " of " + DATA.slices.length + " slices annotated · annotations.json version " + state.version;
  }

  function enqueue(makeBody) {
    // the body is made when the save's turn comes, from the state the earlier saves left
    queue = queue.then(async () => {
      const body = typeof makeBody === "function" ? makeBody() : makeBody;
      if (!body) return;
      const sid = body.slice_id;
      const payload = Object.assign({ version: state.version, expect: state.annotations[sid] || null }, body);
      const r = await api("POST", "api/annotations", payload);
      if (r.status === 200) {
        state = r.data; refresh();
        setStatus("saved " + sid + " (version " + state.version + ")", "ok");
      } else if (r.status === 409) {
        state = r.data.state; refresh();
        setStatus("slice " + sid + " was changed in another tab: showing the latest, choose again", "error");
      } else {
        setStatus("not saved: " + (r.data && r.data.error ? r.data.error : r.status), "error");
      }
    }).catch((e) => setStatus("not saved: " + e, "error"));
    return queue;
  }

  function noteOf(sid) {
    const c = cards[DATA.slices.findIndex((s) => s.id === sid)];
    return c.querySelector('[data-role="note"]').value;
  }
  function choose(sid, label) { return enqueue({ slice_id: sid, label, note: label ? noteOf(sid) : null }); }
  function accept(sid) {
    const sug = state.suggestions[sid];
    if (sug) return choose(sid, sug.label);
  }
  function saveNote(sid, note) {
    enqueue(() => {
      const a = state.annotations[sid];
      if (!a) {
        if (note.value.trim()) setStatus("choose a label for " + sid + " first; the note is kept with it", "error");
        return null;
      }
      if ((a.note || "") === note.value.trim()) return null;
      return { slice_id: sid, label: a.label, note: note.value };
    });
  }

  function select(i, scroll = true) {
    if (i < 0 || i >= cards.length) return;
    cards[current].classList.remove("current");
    current = i;
    cards[i].classList.add("current");
    if (scroll) cards[i].scrollIntoView({ block: "center" });
    document.body.dataset.current = DATA.slices[i].id;
  }

  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT") || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const sid = DATA.slices[current].id;
    if (ev.key === "j" || ev.key === "ArrowDown") { select(current + 1); ev.preventDefault(); }
    else if (ev.key === "k" || ev.key === "ArrowUp") { select(current - 1); ev.preventDefault(); }
    else if (KEYS[ev.key]) { choose(sid, KEYS[ev.key]); }
    else if (ev.key === "0") { choose(sid, null); }
    else if (ev.key === "a") { accept(sid); }
    else if (ev.key === "e") { cards[current].querySelector('[data-role="note"]').focus(); ev.preventDefault(); }
  });

  async function loadMosaic(i) {
    const s = DATA.slices[i];
    const c = cards[i];
    if (c.dataset.mosaic) return;
    c.dataset.mosaic = "loading";
    const r = await api("GET", "api/mosaic/" + s.id.split("/").map(encodeURIComponent).join("/"));
    const box = c.querySelector('[data-role="mosaic"]');
    box.replaceChildren();
    if (r.status !== 200) { box.append(el("span", { class: "saved", text: r.data.error || "no images" })); return; }
    r.data.thumbs.forEach((t) => {
      const f = el("figure", { class: t.correct ? "right" : "wrong" });
      if (t.uri) f.append(el("img", { src: t.uri, alt: "member of " + s.id }));
      else f.append(el("span", { class: "saved", text: "unreadable" }));
      f.append(el("figcaption", { text: (t.correct ? "✓ " : "✗ ") + t.pred }));
      box.append(f);
    });
    if (!r.data.thumbs.length) box.append(el("span", { class: "saved", text: "no members in the " + r.data.split + " split" }));
    const att = c.querySelector('[data-role="attribution"]');
    if (att && r.data.attribution) att.append(el("img", { class: "attribution", src: r.data.attribution, alt: "attribution mosaic of " + s.id }));
    c.dataset.mosaic = "done";
  }

  document.getElementById("run-path").textContent = DATA.run;
  const main = document.getElementById("slices");
  DATA.slices.forEach((s, i) => { const c = card(s, i); cards.push(c); main.append(c); });
  const io = new IntersectionObserver((entries) => entries.forEach((e) => {
    if (e.isIntersecting) loadMosaic(cards.indexOf(e.target));
  }), { rootMargin: "400px" });
  cards.forEach((c) => io.observe(c));
  select(0, false);
  api("GET", "api/state").then((r) => {
    if (r.status === 200) { state = r.data; refresh(); document.body.dataset.ready = "1"; }
    else setStatus("cannot load the annotations: " + (r.data.error || r.status), "error");
  });
})();
