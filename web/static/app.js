// Shared helpers and the reader's feed: clicks and "not interested" are logged with the page's CSRF token.
"use strict";
(function () {
  const token = document.querySelector('meta[name="csrf-token"]');
  window.newsdesk = {
    csrf: token ? token.content : "",
    post: function (url, body) {
      return fetch(url, {
        method: "POST", credentials: "same-origin", keepalive: true,
        headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": this.csrf},
        body: JSON.stringify(body),
      });
    },
  };
  const feed = document.getElementById("feed");
  if (!feed) return;
  feed.addEventListener("click", function (ev) {
    const card = ev.target.closest(".item");
    if (!card) return;
    const itemId = card.dataset.itemId;
    if (ev.target.closest(".not-interested")) {
      window.newsdesk.post("/feed/events", {item_id: itemId, kind: "not_interested"}).then(function (r) {
        if (r.ok) { card.classList.add("gone"); setTimeout(function () { card.remove(); }, 300); }
      });
      return;
    }
    const link = ev.target.closest(".item-title");
    if (!link) return;
    if (!card.dataset.url) ev.preventDefault();
    window.newsdesk.post("/feed/events", {item_id: itemId, kind: "click"}).then(function (r) {
      if (r.ok) card.classList.add("read");
    });
  });
})();
