// Analyst dashboard: the per-ticker and per-topic sentiment charts (plotly.js, served locally) and live updates over SSE.
"use strict";
(function () {
  const chart = document.getElementById("sentiment-chart");
  const tickerSel = document.getElementById("chart-ticker");
  const hoursSel = document.getElementById("chart-hours");

  const topicChart = document.getElementById("topic-chart");
  const topicSel = document.getElementById("chart-topic");
  const hours = function () { return hoursSel ? hoursSel.value : "168"; };
  const netOf = function (v) { const n = v.negative + v.neutral + v.positive; return n ? (v.positive - v.negative) / n : null; };

  function fetchSeries(el, query, draw) {
    fetch(el.dataset.url + "?" + query + "&hours=" + hours(), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); }).then(draw);
  }
  function layoutFor(data, empty) {
    const narrow = window.innerWidth < 640;  // phone: the legend goes below the two-line date ticks and the axis title
    const layout = {barmode: "stack", margin: {l: 40, r: 44, t: 8, b: 36}, legend: {orientation: "h", y: narrow ? -0.42 : -0.18},
      xaxis: {type: "date", range: [data.since, data.until], title: {text: "UTC"}},
      yaxis: {title: {text: "messages (volume)"}, gridcolor: "#eef1f5"},
      yaxis2: {overlaying: "y", side: "right", range: [-1.05, 1.05], autorange: false, tickvals: [-1, -0.5, 0, 0.5, 1],
               zeroline: true, showgrid: false, title: {text: "net sentiment"}},
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: {size: 11}};
    if (empty) layout.annotations = [{text: "no classified messages in this window", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5}];
    return layout;
  }
  // Stacked label counts and the net sentiment line, summed over the rows (tickers or topics) given.
  function drawVolume(el, data) {
    const buckets = {};
    (data.rows || []).forEach(function (r) {
      const b = buckets[r.bucket] || (buckets[r.bucket] = {negative: 0, neutral: 0, positive: 0, total: 0});
      b.negative += r.negative; b.neutral += r.neutral; b.positive += r.positive; b.total += r.total;
    });
    const x = Object.keys(buckets).sort();
    const pick = function (k) { return x.map(function (b) { return buckets[b][k]; }); };
    // net sentiment over the labelled messages only; a bucket with none has no value (a gap, not a zero)
    const net = x.map(function (b) { return netOf(buckets[b]); });
    const unlabelled = x.map(function (b) { const v = buckets[b]; return v.total - v.negative - v.neutral - v.positive; });
    const width = (data.bucket_s || 3600) * 1000 * 0.8;  // bar width in ms on the date axis
    const traces = [
      {x: x, y: pick("negative"), name: "negative", type: "bar", width: width, marker: {color: "#d8342c"}},
      {x: x, y: pick("neutral"), name: "neutral", type: "bar", width: width, marker: {color: "#b8c0cc"}},
      {x: x, y: pick("positive"), name: "positive", type: "bar", width: width, marker: {color: "#1a8f4c"}},
      {x: x, y: unlabelled, name: "not classified yet", type: "bar", width: width, marker: {color: "#e3e7ee"}},
      {x: x, y: net, name: "net sentiment", type: "scatter", mode: "lines+markers", yaxis: "y2", line: {color: "#1f5eff", width: 2}},
    ];
    window.Plotly.react(el, traces, layoutFor(data, !x.length), {displayModeBar: false, responsive: true});
  }
  // One net-sentiment line per topic, to compare topics over the same window.
  function drawTopicLines(el, data) {
    const per = {};
    (data.rows || []).forEach(function (r) { (per[r.topic] || (per[r.topic] = [])).push(r); });
    const traces = Object.keys(per).sort().map(function (topic) {
      const rows = per[topic];
      return {x: rows.map(function (r) { return r.bucket; }), y: rows.map(netOf), name: topic, type: "scatter",
              mode: "lines+markers", text: rows.map(function (r) { return r.total + " messages"; })};
    });
    const layout = layoutFor(data, !traces.length);
    layout.yaxis = {title: {text: "net sentiment"}, range: [-1.05, 1.05], autorange: false, zeroline: true, gridcolor: "#eef1f5"};
    delete layout.yaxis2;
    window.Plotly.react(el, traces, layout, {displayModeBar: false, responsive: true});
  }
  // Several tickers side by side: one net-sentiment line per ticker (message counts in the hover text).
  const compareBox = document.getElementById("chart-compare");
  const chartTitle = document.getElementById("chart-title");
  function comparedTickers() {
    if (!compareBox) return [];
    const main = tickerSel ? tickerSel.value : "";
    const picked = Array.prototype.map.call(compareBox.querySelectorAll("input:checked"), function (c) { return c.value; });
    const all = (main ? [main] : []).concat(picked.filter(function (t) { return t !== main; }));
    return picked.length ? all.slice(0, parseInt(compareBox.dataset.max || "6", 10)) : [];
  }
  function drawTickerLines(el, data) {
    const per = {};
    (data.rows || []).forEach(function (r) { (per[r.ticker] || (per[r.ticker] = [])).push(r); });
    const traces = (data.tickers || []).filter(function (t) { return per[t]; }).map(function (t) {
      const rows = per[t];
      return {x: rows.map(function (r) { return r.bucket; }), y: rows.map(netOf), name: "$" + t, type: "scatter",
              mode: "lines+markers", connectgaps: false, text: rows.map(function (r) { return r.total + " messages"; }),
              hovertemplate: "$" + t + " %{y:.2f}<br>%{text}<extra></extra>"};
    });
    const layout = layoutFor(data, !traces.length);
    layout.yaxis = {title: {text: "net sentiment"}, range: [-1.05, 1.05], autorange: false, zeroline: true, gridcolor: "#eef1f5"};
    delete layout.yaxis2;
    window.Plotly.react(el, traces, layout, {displayModeBar: false, responsive: true});
  }
  function drawChart() {
    if (!window.Plotly) return;
    const compared = comparedTickers();
    const main = tickerSel ? tickerSel.value : "";
    if (chartTitle) chartTitle.textContent = compared.length ? "for " + compared.map(function (t) { return "$" + t; }).join(" vs ") : main ? "for $" + main : "for all tickers";
    const note = document.getElementById("compare-note");
    if (note) note.hidden = !compared.length;
    if (chart && compared.length) fetchSeries(chart, "tickers=" + encodeURIComponent(compared.join(",")), function (d) { drawTickerLines(chart, d); });
    else if (chart) fetchSeries(chart, "ticker=" + encodeURIComponent(main), function (d) { drawVolume(chart, d); });
    if (topicChart) {
      const topic = topicSel ? topicSel.value : "";
      fetchSeries(topicChart, "by=topic&topic=" + encodeURIComponent(topic),
                  function (d) { if (topic) drawVolume(topicChart, d); else drawTopicLines(topicChart, d); });
    }
  }
  if (topicSel) topicSel.addEventListener("change", drawChart);
  if (tickerSel) tickerSel.addEventListener("change", drawChart);
  if (hoursSel) hoursSel.addEventListener("change", drawChart);
  if (compareBox) compareBox.addEventListener("change", drawChart);
  let wasNarrow = window.innerWidth < 640;
  window.addEventListener("resize", function () {  // a phone turned, a window narrowed: lay the legends out again
    const narrow = window.innerWidth < 640;
    if (narrow !== wasNarrow) { wasNarrow = narrow; drawChart(); }
  });
  drawChart();

  // Live updates -------------------------------------------------------------------------------------
  const activity = document.getElementById("activity");
  const dot = document.getElementById("live-dot");
  const status = document.getElementById("live-status");
  if (!activity || !window.EventSource) return;

  function displayState(a) {
    if (a.state === "firing" && a.silenced) return "silenced";
    if (a.state === "firing" && a.acknowledged_at) return "acknowledged";
    return a.state;
  }
  function addActivity(text) {
    const first = activity.querySelector(".muted");
    if (first) first.remove();
    const li = document.createElement("li");
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date().toISOString().slice(11, 19) + " UTC";  // the tables' times are UTC too
    li.appendChild(when);
    li.appendChild(document.createTextNode(text));  // text only: alert summaries are untrusted
    activity.insertBefore(li, activity.firstChild);
  }
  // The alert table and the message list follow the stream too (rows built with textContent only: untrusted text).
  const alertTable = document.getElementById("alerts");
  const alertCount = document.getElementById("alert-count");
  const messageTable = document.getElementById("messages");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function badge(cls, text) { return el("span", "badge " + cls, text); }
  function utc(iso) { return iso ? iso.replace("T", " ").slice(0, 16) + " UTC" : ""; }
  function matchesAlertFilters(a, state) {
    const f = alertTable.dataset;
    if (f.page !== "1" || f.since) return false;  // older pages and time windows keep their rows until a reload
    if (f.state && f.state !== state) return false;
    if (f.ticker && f.ticker !== a.ticker) return false;
    if (f.topic && f.topic !== (a.topic || "")) return false;
    return !(f.ruleId && String(a.rule_id) !== f.ruleId);
  }
  function alertRow(a, state) {
    const tr = el("tr", "row-sev-" + a.severity);
    tr.dataset.alertId = a.id;
    const link = el("a", "", String(a.id));
    link.href = alertTable.dataset.base + "alerts/" + a.id;
    const cells = [link, badge("state-" + state, state), "$" + a.ticker,
                   a.topic ? el("span", "chip", a.topic) : el("span", "muted", "any"), null, a.summary,
                   "just now", "just now", null];
    cells.forEach(function (c, i) {
      const td = el("td", i === 2 ? "mono" : i === 5 ? "summary" : "");
      if (i === 1) { c.dataset.role = "state"; }
      if (i === 3) td.dataset.role = "topic";
      if (i === 7) td.dataset.role = "updated";
      if (i === 4) { td.appendChild(document.createTextNode(a.rule_name + " ")); td.appendChild(badge("sev-" + a.severity, a.severity)); }
      else if (i === 6) { td.textContent = c; td.title = utc(a.started_at); }
      else if (i === 8) {
        if (state === "firing") {
          const form = el("form", "inline");
          form.method = "post";
          form.action = alertTable.dataset.base + "alerts/" + a.id + "/ack";
          [["csrf_token", csrf], ["back", alertTable.dataset.back]].forEach(function (kv) {
            const input = el("input"); input.type = "hidden"; input.name = kv[0]; input.value = kv[1]; form.appendChild(input);
          });
          const button = el("button", "btn small", "Acknowledge"); button.type = "submit";
          form.appendChild(button);
          td.appendChild(form);
        }
      }
      else if (c && c.nodeType) td.appendChild(c);
      else td.textContent = c;
      tr.appendChild(td);
    });
    return tr;
  }
  function insertAlert(a, state) {
    if (!alertTable || !matchesAlertFilters(a, state)) return;
    const body = alertTable.tBodies[0];
    const empty = body.querySelector(".empty-row");
    if (empty) empty.remove();
    body.insertBefore(alertRow(a, state), body.firstChild);
    if (alertCount) alertCount.textContent = String(parseInt(alertCount.textContent, 10) + 1);
  }
  function fillLabel(td, m) {
    td.textContent = "";
    if (m.label) td.appendChild(badge("label-" + m.label, m.label));
    else td.appendChild(el("span", "muted", m.status === "skipped" ? "skipped" : "pending"));
  }
  function fillTopic(td, m) {
    td.textContent = "";
    if (m.topic) { const chip = el("span", "chip", m.topic); chip.title = "probability " + (m.topic_score || 0).toFixed(2); td.appendChild(chip); }
  }
  function messageRow(m) {
    const tr = el("tr");
    tr.dataset.messageId = m.id;
    tr.dataset.ts = (m.ts || "").replace(/Z$/, "");
    const when = el("td", "", "just now"); when.title = utc(m.ts); tr.appendChild(when);
    tr.appendChild(el("td", "", m.source));
    tr.appendChild(el("td", "mono", (m.tickers || []).map(function (t) { return "$" + t; }).join(" ")));
    const label = el("td"); label.dataset.role = "label"; fillLabel(label, m); tr.appendChild(label);
    const topic = el("td"); topic.dataset.role = "topic"; fillTopic(topic, m); tr.appendChild(topic);
    tr.appendChild(el("td", "text", m.text));
    return tr;
  }
  // Messages shown as "pending" that a model labelled since: their rows get the label and topic in place.
  function markClassified(messages) {
    if (!messageTable || !messages) return;
    messages.forEach(function (m) {
      const row = messageTable.querySelector('tr[data-message-id="' + m.id + '"]');
      if (!row) return;
      fillLabel(row.querySelector('[data-role="label"]'), m);
      fillTopic(row.querySelector('[data-role="topic"]'), m);
      row.classList.remove("flash-row"); void row.offsetWidth; row.classList.add("flash-row");
    });
  }
  function addMessages(messages) {
    if (!messageTable || !messages) return;
    const body = messageTable.tBodies[0];
    const wanted = messageTable.dataset.topic;
    const fresh = messages.filter(function (m) {
      return (!wanted || m.topic === wanted) && !body.querySelector('tr[data-message-id="' + m.id + '"]');
    });
    if (!fresh.length) return;
    const empty = body.querySelector(".empty-row");
    if (empty) empty.remove();
    const rows = Array.prototype.slice.call(body.rows).concat(fresh.map(messageRow));
    rows.sort(function (x, y) {  // newest message time first, as the server renders it
      return x.dataset.ts < y.dataset.ts ? 1 : x.dataset.ts > y.dataset.ts ? -1 : Number(y.dataset.messageId) - Number(x.dataset.messageId);
    });
    const limit = parseInt(messageTable.dataset.limit || "20", 10);
    rows.forEach(function (r, i) { if (i < limit) body.appendChild(r); else r.remove(); });
  }

  // The firing groups (Alertmanager's group_by [ticker, topic]) follow the stream: a firing alert joins its group,
  // a resolved one leaves it, an empty group goes.
  const groupList = document.querySelector("#alert-groups ul.groups");
  function countGroup(li) {
    const n = li.querySelectorAll("a.chip").length;
    if (!n) li.remove();
    else li.querySelector(".count").textContent = n + " alert" + (n === 1 ? "" : "s");
    const none = groupList.querySelector(".no-groups");
    if (none) none.hidden = groupList.querySelectorAll("li.group").length > 0;
  }
  function updateGroups(a) {
    if (!groupList) return;
    let chip = groupList.querySelector('a.chip[data-alert-id="' + a.id + '"]');
    if (a.state !== "firing") { if (chip) { const li = chip.closest("li"); chip.remove(); countGroup(li); } return; }
    if (chip) return;
    const key = a.topic ? a.ticker + " / " + a.topic : a.ticker;
    let li = Array.prototype.find.call(groupList.querySelectorAll("li.group"), function (g) { return g.dataset.group === key; });
    if (!li) {
      li = el("li", "group"); li.dataset.group = key;
      li.appendChild(el("strong", "mono", "$" + key));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", "muted small count", ""));
      li.appendChild(document.createTextNode(" "));
      groupList.insertBefore(li, groupList.querySelector(".no-groups"));
    }
    chip = el("a", "chip sev-" + a.severity, "#" + a.id + " " + a.rule_name);
    chip.dataset.alertId = a.id; chip.href = groupList.dataset.base + "alerts/" + a.id; chip.title = a.summary || "";
    li.appendChild(chip);
    countGroup(li);
  }

  function updateAlert(a) {
    updateGroups(a);
    const state = displayState(a);
    const row = document.querySelector('tr[data-alert-id="' + a.id + '"]');
    if (!row) insertAlert(a, state);
    if (row) {
      const badge = row.querySelector('[data-role="state"]');
      badge.textContent = state;
      badge.className = "badge state-" + state;
      const updated = row.querySelector('[data-role="updated"]');
      if (updated) updated.textContent = "just now";
      if (state !== "firing") row.querySelectorAll("form").forEach(function (f) { f.remove(); });
      row.classList.remove("flash-row"); void row.offsetWidth; row.classList.add("flash-row");
    }
    let what = "Alert #" + a.id + " $" + a.ticker + (a.topic ? " within " + a.topic : "") + " " + state;
    if (state === "acknowledged" && a.acknowledged_by) what += " by " + a.acknowledged_by;
    addActivity(what + (a.summary ? ": " + a.summary : ""));
  }

  const source = new EventSource("/events/stream");
  source.addEventListener("hello", function () { dot.classList.add("on"); status.textContent = "live"; });
  source.addEventListener("change", function (ev) {
    const data = JSON.parse(ev.data);
    if (data.type === "alert" && data.alert) updateAlert(data.alert);
    else if (data.type === "messages") {
      addActivity(data.count + " new message" + (data.count === 1 ? "" : "s"));
      addMessages(data.messages);
      drawChart();
    }
    else if (data.type === "classified") {
      markClassified(data.messages);
      addActivity(data.messages.length + " waiting message" + (data.messages.length === 1 ? "" : "s") + " classified");
      drawChart();
    }
    else addActivity(data.type || "change");
  });
  source.addEventListener("problem", function (ev) { status.textContent = JSON.parse(ev.data).message; });
  source.addEventListener("busy", function () { dot.classList.remove("on"); status.textContent = "busy, retrying soon…"; });
  source.onerror = function () { dot.classList.remove("on"); status.textContent = "reconnecting…"; };
})();
