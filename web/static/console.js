// Model console: the primary metric of each version as a small bar chart (current version highlighted).
"use strict";
(function () {
  if (!window.Plotly) return;
  document.querySelectorAll("script.metrics-data").forEach(function (node) {
    const data = JSON.parse(node.textContent);
    const target = document.getElementById(node.dataset.target);
    if (!target || !data.metric) return;
    // Close values (0.688 vs 0.695) must not look equal: the axis starts near the smallest value, not at 0.
    const nums = data.values.filter(function (v) { return typeof v === "number"; });
    let range = null;
    if (nums.length) {
      const lo = Math.min.apply(null, nums), hi = Math.max.apply(null, nums);
      const pad = Math.max((hi - lo) * 0.5, Math.abs(hi) * 0.01, 1e-4);
      if (lo - pad > 0) range = [lo - pad, hi + pad];
    }
    const colors = data.current.map(function (c) { return c ? "#1a8f4c" : "#9db4e8"; });
    window.Plotly.newPlot(target, [{x: data.versions, y: data.values, type: "bar", marker: {color: colors},
      hovertemplate: "%{x}<br>" + data.metric + " %{y:.4f}<extra></extra>"}],
      {margin: {l: 44, r: 10, t: 24, b: 40}, title: {text: data.metric, font: {size: 12}, x: 0.01},
       xaxis: {type: "category"}, yaxis: range ? {gridcolor: "#eef1f5", range: range, title: {text: "axis does not start at 0", font: {size: 9}}}
         : {gridcolor: "#eef1f5"}, paper_bgcolor: "rgba(0,0,0,0)",
       plot_bgcolor: "rgba(0,0,0,0)", font: {size: 11}}, {displayModeBar: false, responsive: true});
  });
})();

// While a training runs, reload now and then so that its step and time left move (not while a form is in use).
(function () {
  if (!document.querySelector("#runs .run-running")) return;
  setTimeout(function check() {
    const busy = document.activeElement && ["INPUT", "SELECT", "TEXTAREA"].indexOf(document.activeElement.tagName) >= 0;
    if (busy) { setTimeout(check, 15000); return; }
    window.location.reload();
  }, 15000);
})();
