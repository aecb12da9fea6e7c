// edged console: applies the live values of the event stream to the
// elements that carry their key (data-k: text, data-p: an SVG path).
"use strict";
(function () {
  var scope = document.body.dataset.scope || "";
  var live = document.getElementById("live");
  var url = "/console/events" + (scope ? "?device=" + encodeURIComponent(scope) : "");
  var es = new EventSource(url);
  es.onopen = function () { live.textContent = "live"; live.dataset.v = "on"; };
  es.onerror = function () { live.textContent = "reconnecting…"; live.dataset.v = "off"; };
  es.onmessage = function (ev) {
    var m = JSON.parse(ev.data);
    Object.keys(m).forEach(function (k) {
      var v = m[k], q = CSS.escape(k);
      if (k.indexOf("p:") === 0) {
        document.querySelectorAll('[data-p="' + q + '"]').forEach(function (el) { el.setAttribute("d", v); });
        return;
      }
      document.querySelectorAll('[data-k="' + q + '"]').forEach(function (el) {
        el.textContent = v;
        if (el.hasAttribute("data-v")) { el.dataset.v = v; }
      });
    });
  };
})();
