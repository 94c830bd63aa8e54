/* mjflow dashboard: refresh the page's #live part in place while it may still change. */
(function () {
  "use strict";
  var live = document.getElementById("live");
  var stamp = document.getElementById("updated");

  function updated() {
    if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
  }

  if (live) {
    var every = parseInt(live.getAttribute("data-refresh") || "0", 10);
    var busy = false;
    var schedule = function () { if (every > 0) window.setTimeout(tick, every); };
    var tick = function () {
      if (busy || document.hidden) { schedule(); return; }
      busy = true;
      fetch(window.location.href, {
        headers: { "X-Dashboard-Partial": "1" }, credentials: "same-origin", cache: "no-store"
      }).then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        if (!resp.ok) return null;
        every = parseInt(resp.headers.get("X-Dashboard-Refresh") || "0", 10);
        return resp.text();
      }).then(function (html) {
        if (typeof html === "string") { live.innerHTML = html; updated(); }
      }).catch(function () { /* offline for a moment: try again next time */ })
        .then(function () { busy = false; schedule(); });
    };
    if (every > 0) { updated(); schedule(); }
  }

  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
})();
