// kedahttp live page: renders the server's event stream (/live/events); no framework, no build step.
"use strict";
(() => {
  const PAGE = 50;
  const rows = new Map();        // app -> row object from the server
  let offset = 0, total = 0, query = "", source = null, retry = null;
  const $ = (id) => document.getElementById(id);

  function ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, (Date.now() - ms) / 1000);
    return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
  }
  function until(ms) {
    if (!ms) return "—";
    const s = (ms - Date.now()) / 1000;
    return s > 0 ? `in ${s.toFixed(0)} s` : "due";
  }
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function render(row, tr) {
    tr = tr || document.createElement("tr");
    const before = tr.dataset.state;
    tr.dataset.app = row.app;
    tr.dataset.state = row.state;
    tr.replaceChildren(
      cell(row.app),
      (() => { const td = document.createElement("td"); const s = document.createElement("span");
               s.className = `state ${row.state}`; s.textContent = row.state; td.append(s); return td; })(),
      cell(String(row.ready), "num"), cell(String(row.inFlight), "num"), cell(String(row.held), "num"),
      cell(row.rate.toFixed(1), "num"), cell(ago(row.lastRequest), "ago"), cell(until(row.scaleDownAt), "until"));
    if (before && before !== row.state) { tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash"); }
    return tr;
  }
  function page(data) {
    total = data.total; offset = data.offset;
    rows.clear();
    const body = $("apps");
    body.replaceChildren(...data.rows.map((r) => { rows.set(r.app, r); return render(r); }));
    $("range").textContent = total ? `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}` : "no apps match";
    $("prev").disabled = offset === 0;
    $("next").disabled = offset + PAGE >= total;
  }
  function update(list) {
    for (const r of list) {
      rows.set(r.app, r);
      const tr = document.querySelector(`tr[data-app="${CSS.escape(r.app)}"]`);
      if (tr) render(r, tr);
    }
  }
  function summary(s) {
    const c = s.counts;
    $("summary").textContent = `${s.apps} ${s.apps === 1 ? "app" : "apps"}: ${c.warm} warm, ${c.waking} waking, ${c.cold} cold`;
    $("coldstarts").replaceChildren(...s.coldStarts.map((x) => {
      const li = document.createElement("li");
      li.textContent = `${x.app}: ${x.wait === null ? "timed out" : `waited ${x.wait.toFixed(2)} s`}, ${ago(x.at)}`;
      return li;
    }));
  }
  function connect() {
    if (source) source.close();
    clearTimeout(retry);
    const params = new URLSearchParams({ q: query, offset: String(offset), limit: String(PAGE) });
    source = new EventSource(`/live/events?${params}`);
    source.addEventListener("page", (e) => page(JSON.parse(e.data)));
    source.addEventListener("rows", (e) => update(JSON.parse(e.data)));
    source.addEventListener("summary", (e) => summary(JSON.parse(e.data)));
    source.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn on"; };
    source.onerror = () => {
      $("conn").textContent = "reconnecting…"; $("conn").className = "conn";
      if (source.readyState === EventSource.CLOSED) retry = setTimeout(() => location.reload(), 2000);
    };
  }
  let typing = null;
  $("search").addEventListener("input", (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => { query = e.target.value; offset = 0; connect(); }, 200);
  });
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); connect(); });
  $("next").addEventListener("click", () => { offset += PAGE; connect(); });
  setInterval(() => {  // ages tick locally: the server sends times, not ages
    for (const tr of $("apps").children) {
      const r = rows.get(tr.dataset.app);
      if (!r) continue;
      tr.querySelector(".ago").textContent = ago(r.lastRequest);
      tr.querySelector(".until").textContent = until(r.scaleDownAt);
    }
  }, 1000);
  connect();
})();
