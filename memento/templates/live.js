(function () {
  "use strict";
  // memento live refresh: ask the server whether the code serving this page
  // is still the code serving now; reload when it is not.
  var me = document.currentScript;
  if (!me || !window.fetch || window.mementoLive) { return; }
  var url = me.getAttribute("data-memento-live");
  var token = me.getAttribute("data-memento-token");
  var failures = 0;
  window.mementoLive = {url: url};

  function later(delay) { window.setTimeout(poll, delay); }

  function swapStylesheets() {
    var links = document.querySelectorAll('link[rel~="stylesheet"][href]');
    var stamp = String(Date.now());
    Array.prototype.forEach.call(links, function (link) {
      var href = new URL(link.href, location.href);
      if (href.origin !== location.origin) { return; }
      href.searchParams.set("memento", stamp);
      var fresh = link.cloneNode();
      fresh.href = href.toString();
      // The old sheet stays until the new one applies: no flash of plain text.
      fresh.addEventListener("load", function () { link.remove(); });
      fresh.addEventListener("error", function () { fresh.remove(); });
      link.after(fresh);
    });
  }

  function answer(message) {
    failures = 0;
    if (message.action === "reload") {
      location.reload();
      return;
    }
    if (message.action === "css") {
      swapStylesheets();
    }
    token = message.token;
    later(message.retry || 0);
  }

  function poll() {
    fetch(url + "?token=" + encodeURIComponent(token), {cache: "no-store"}).then(
      function (response) {
        if (response.status === 404 || response.status === 403) { return; }
        if (!response.ok) { throw new Error(response.status); }
        return response.json().then(answer);
      }
    ).catch(function () {
      // The server restarts, or is gone: try again, less and less often.
      failures += 1;
      later(Math.min(250 * Math.pow(2, failures - 1), 4000));
    });
  }

  later(0);
})();
