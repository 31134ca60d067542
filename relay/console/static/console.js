// relay's console: times in the browser's zone (UTC stays on hover), auto-refresh that keeps the filters, and a
// confirmation before Retry and Purge. Everything works without it: it only improves what the server rendered.
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (t) {
  var d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d)) { t.textContent = d.toLocaleString(); }
});
document.querySelectorAll("form[data-confirm]").forEach(function (f) {
  f.addEventListener("submit", function (e) {
    if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
  });
});
var refresh = document.querySelector("input[name=refresh]");
if (refresh && refresh.checked && refresh.form) {
  // Re-submits the page's own filter form (a POST: filters never go into a URL), so the filters are kept.
  window.setTimeout(function () { refresh.form.submit(); }, 30000);
}
