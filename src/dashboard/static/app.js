// datarun dashboard: live updates without reloading. Fold states follow the event stream
// (GET /api/v1/events, server-sent events, from the seq the page was rendered at); regions
// marked data-swap are re-read from the server after changes; a fold's log is polled while it
// runs. Everything shown is set as text or taken from the server's own escaped HTML.
"use strict";
(function () {
  var ENDED = { done: 1, failed: 1, removed: 1, held: 1 };
  var LOG_TAIL = 64 * 1024;
  var status = function (text) {
    var el = document.getElementById("live-status");
    if (el) el.textContent = text;
  };

  function setState(fold, state) {
    var els = document.querySelectorAll('[data-fold-state="' + fold + '"]');
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = state;
      els[i].className = "state s-" + state;
    }
  }

  var swapTimer = null;
  function refreshSoon() {
    if (!document.querySelector("[data-swap]") || swapTimer) return;
    swapTimer = setTimeout(function () {
      swapTimer = null;
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var olds = document.querySelectorAll("[data-swap]");
          for (var i = 0; i < olds.length; i++) {
            var fresh = doc.getElementById(olds[i].id);
            if (fresh) olds[i].replaceWith(document.adoptNode(fresh));
          }
          followLog();
        })
        .catch(function () {});
    }, 500);
  }

  function listen() {
    var since = document.body.getAttribute("data-since");
    if (!window.EventSource || since === null) return;
    // A fold's page follows that fold's events only.
    var one = document.querySelector("[data-fold]");
    var url = "/api/v1/events?since=" + encodeURIComponent(since);
    if (one) url += "&folds=" + encodeURIComponent(one.getAttribute("data-fold"));
    var src = new EventSource(url);
    src.onopen = function () { status("live"); };
    src.onerror = function () { status("reconnecting…"); };
    src.onmessage = function (m) {
      var e;
      try { e = JSON.parse(m.data); } catch (err) { return; }
      if (e.fold && e.state) setState(e.fold, e.state);
      refreshSoon();
    };
  }

  var logTimer = null;
  function followLog() {
    var pre = document.getElementById("log");
    if (!pre || logTimer) return;
    var tick = function () {
      logTimer = null;
      var stateEl = document.getElementById("state");
      var ended = stateEl && ENDED[stateEl.textContent.trim()];
      fetch(pre.getAttribute("data-log"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (text) {
          if (text.length > LOG_TAIL) text = text.slice(text.length - LOG_TAIL);
          if (text !== pre.textContent) {
            var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.textContent = text;
            if (atEnd) pre.scrollTop = pre.scrollHeight;
          }
        })
        .catch(function () {})
        .then(function () {
          if (!ended) logTimer = setTimeout(tick, 1000);
        });
    };
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    listen();
    followLog();
  });
})();
