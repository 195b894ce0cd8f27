// Onboarding: filter the ticker checkboxes as the reader types (checked ones stay visible).
(function () {
  var box = document.getElementById("ticker-search");
  if (!box) return;
  box.addEventListener("input", function () {
    var q = box.value.trim().toUpperCase().replace(/^\$/, "");
    document.querySelectorAll("#ticker-choices .ticker").forEach(function (el) {
      var show = !q || el.dataset.ticker.indexOf(q) !== -1 || el.querySelector("input").checked;
      el.style.display = show ? "" : "none";
    });
  });
})();
