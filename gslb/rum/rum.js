/* gslb real-user measurement beacon, v1. No dependencies, no cookies, never blocks the page.
   <script async src="https://gslb.example.com/rum/v1/rum.js" data-name="content.example.com"></script>
   Some seconds after load: ask gslb which CDNs to measure (a token bound to this network),
   fetch a tiny cache-busted object from each (cold, then warm on the same connection), read
   the Resource Timing entry, and send the results with navigator.sendBeacon. */
(function () {
  "use strict";
  var me = document.currentScript;
  var nav = navigator;
  if (!me || !window.fetch || !nav.sendBeacon || !window.performance) return;
  if (nav.connection && nav.connection.saveData) return;
  var base = me.src.replace(/\/rum\/v1\/rum\.js(\?.*)?$/, "");
  var name = me.getAttribute("data-name");
  var type = me.getAttribute("data-type") || "CNAME";
  var delay = Number(me.getAttribute("data-delay") || 2000);
  var timeout = Number(me.getAttribute("data-timeout") || 4000);
  if (!name) return;

  function duration(url, started) {
    var entries = performance.getEntriesByName(url);
    var entry = entries[entries.length - 1];
    if (entry && entry.duration > 0) return entry.duration;
    return performance.now() - started; /* no entry (buffer full): the fetch as JS saw it */
  }

  function measure(target, kind) {
    var url = target.url + (target.url.indexOf("?") < 0 ? "?" : "&") + "gslb-rum=" +
      Math.random().toString(36).slice(2);
    var ctl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, timeout);
    var started = performance.now();
    var failed = function () { clearTimeout(timer); return { t: target.t, k: kind, ok: 0 }; };
    return fetch(url, { cache: "no-store", credentials: "omit", mode: "cors",
                        signal: ctl ? ctl.signal : undefined })
      .then(function (response) {
        return response.arrayBuffer().then(function () {
          clearTimeout(timer);
          if (!response.ok) return { t: target.t, k: kind, ok: 0 };
          var ms = duration(url, started);
          return { t: target.t, k: kind, ok: 1, ms: Math.round(ms * 10) / 10 };
        });
      }, failed)
      .catch(failed);
  }

  function run() {
    var recipe = base + "/rum/v1/recipe?name=" + encodeURIComponent(name) +
      "&type=" + encodeURIComponent(type);
    fetch(recipe, { credentials: "omit", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (!job || !job.targets || !job.targets.length) return;
        /* A one-off name: gslb learns which resolver serves this browser's network. */
        if (job.resolve) new Image().src = job.resolve;
        var results = [];
        var chain = Promise.resolve();
        job.targets.forEach(function (target) {
          chain = chain
            .then(function () { return measure(target, "cold"); })
            .then(function (r) { results.push(r); return measure(target, "warm"); })
            .then(function (r) { results.push(r); });
        });
        return chain.then(function () {
          var body = JSON.stringify({ v: 1, r: job.r, y: job.y, tok: job.tok, m: results });
          nav.sendBeacon(base + "/rum/v1/beacons", body);
        });
      })
      .catch(function () { /* measuring must never disturb the page */ });
  }

  function later() { setTimeout(run, delay); }
  if (document.readyState === "complete") later();
  else window.addEventListener("load", later);
})();
