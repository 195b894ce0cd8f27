// Rule editor: the new-rule form shows the parameter fields of the kind picked (the others are disabled, so not sent).
"use strict";
(function () {
  document.querySelectorAll("select.kind-select").forEach(function (select) {
    const form = select.closest("form");
    function show() {
      form.querySelectorAll("fieldset.params").forEach(function (fs) {
        const on = fs.dataset.kind === select.value;
        fs.hidden = !on;
        fs.disabled = !on;
      });
    }
    select.addEventListener("change", show);
    show();
  });
})();
