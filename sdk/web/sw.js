// sessionpush service worker: shows pushes, reports opens, opens links.
//
// A classic script, so that a site's own worker can take it in with
// importScripts("https://GATEWAY/sdk/sw.js"): a worker must come from the
// page's origin, the gateway usually does not. requestPush() registers the
// site's worker with ?gateway=URL; without it, the worker's own origin is
// taken to be the gateway's.
//
// The push payload is the message as the gateway sends it (docs/delivery.md):
// id, rule, title, body, link, image, data; `icon` and `actions`
// ([{action, title, link}]) are read from it or from its data.
(function () {
  "use strict";
  var query = new URL(self.location.href).searchParams;
  var gateway = (query.get("gateway") || self.location.origin).replace(/\/$/, "");

  function parse(data) {
    if (!data) return null;
    try {
      return data.json();
    } catch (e) {
      return { title: data.text() };
    }
  }

  function show(message) {
    if (!message || !message.title) return Promise.resolve();
    var data = message.data || {};
    var options = {
      body: message.body || "",
      tag: message.id,
      data: { id: message.id, link: message.link, actions: [] },
    };
    var icon = message.icon || data.icon;
    var image = message.image || data.image;
    var actions = message.actions || data.actions || [];
    if (icon) options.icon = icon;
    if (image) options.image = image;
    if (actions.length) {
      options.actions = actions.map(function (a) {
        return { action: a.action, title: a.title };
      });
      options.data.actions = actions;
    }
    return self.registration.showNotification(message.title, options);
  }

  // Only web links open a window; an app link (shop://cart) or a script
  // link from a tampered payload falls back to the site's root.
  function target(link) {
    try {
      var url = new URL(link || "/", self.location.origin);
      if (url.protocol === "https:" || url.protocol === "http:") return url.href;
    } catch (e) {}
    return self.location.origin + "/";
  }

  // text/plain keeps the report a simple request: no CORS preflight.
  function report(id, action) {
    if (!id) return Promise.resolve();
    return fetch(gateway + "/v1/messages/" + encodeURIComponent(id) + "/opened", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify(action ? { action: action } : {}),
      keepalive: true,
    }).catch(function () {});
  }

  function click(notification, action) {
    var data = notification.data || {};
    var chosen = (data.actions || []).filter(function (a) {
      return a.action === action;
    })[0];
    var url = target((chosen && chosen.link) || data.link);
    notification.close();
    return report(data.id, action).then(function () {
      return clients
        .matchAll({ type: "window", includeUncontrolled: true })
        .then(function (windows) {
          for (var i = 0; i < windows.length; i++) {
            if (windows[i].url === url && "focus" in windows[i]) {
              return windows[i].focus();
            }
          }
          return clients.openWindow ? clients.openWindow(url) : null;
        })
        .catch(function () {});
    });
  }

  self.addEventListener("push", function (event) {
    event.waitUntil(show(parse(event.data)));
  });
  self.addEventListener("notificationclick", function (event) {
    event.waitUntil(click(event.notification, event.action));
  });
  // For a site's own worker that handles some pushes itself.
  self.sessionpush = { show: show, click: click, target: target, gateway: gateway };
})();
