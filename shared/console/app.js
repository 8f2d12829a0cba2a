/* Skyhook console: a small single-page app on the public API.
 *
 * Two modes:
 * - console: signed in with an application API key (kept in sessionStorage);
 * - portal:  opened as /?portal=<token>; shows only the endpoints the token
 *            allows, with their deliveries, and a few actions.
 *
 * No framework and no innerHTML: every node is built with h(), every text is
 * set as text, so nothing the API returns can become markup. */
(function () {
  "use strict";

  // ------------------------------------------------------------------ storage

  var memory = {};
  var storage = {
    get: function (k) {
      try { return window.sessionStorage.getItem(k); } catch (e) { return memory[k] || null; }
    },
    set: function (k, v) {
      try { window.sessionStorage.setItem(k, v); } catch (e) { memory[k] = v; }
    },
    del: function (k) {
      try { window.sessionStorage.removeItem(k); } catch (e) { /* private mode */ }
      delete memory[k];
    }
  };
  var KEY = "skyhook.apiKey";
  var PORTAL = "skyhook.portalToken";

  // ------------------------------------------------------------------ DOM

  function h(tag, attrs) {
    var node = document.createElement(tag);
    attrs = attrs || {};
    Object.keys(attrs).forEach(function (name) {
      var value = attrs[name];
      if (value == null || value === false) return;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
      else if (name === "value") node.value = value;
      else if (name === "checked" || name === "selected" || name === "disabled" || name === "open") node[name] = !!value;
      else node.setAttribute(name, value === true ? "" : String(value));
    });
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child == null || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  var main = document.getElementById("main");
  var toastEl = document.getElementById("toast");
  var toastTimer = null;

  function toast(message, isError) {
    toastEl.textContent = message;
    toastEl.className = "toast" + (isError ? " toast-error" : "");
    toastEl.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { toastEl.hidden = true; }, isError ? 8000 : 4500);
  }

  // ------------------------------------------------------------------ formatting

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function fmtTime(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function time(iso) {
    return h("time", { datetime: iso || null, title: iso || null, class: "nowrap", text: fmtTime(iso) });
  }

  function toLocalInput(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function fromLocalInput(value) {
    if (!value) return "";
    var d = new Date(value);
    return isNaN(d.getTime()) ? "" : d.toISOString();
  }

  function fmtMs(ms) {
    if (ms == null) return "—";
    return window.SkyhookChart ? window.SkyhookChart.formatMs(ms) : Math.round(ms) + " ms";
  }

  function badge(status) {
    return h("span", { class: "badge badge-" + status, text: status });
  }

  function responseBadge(value) {
    if (value == null) return h("span", { class: "muted", text: "—" });
    var cls = typeof value === "number" ? (value >= 200 && value < 300 ? "badge-2xx" : "badge-err") : "badge-err";
    return h("span", { class: "badge " + cls, text: String(value) });
  }

  function pretty(text) {
    if (text == null || text === "") return null;
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return String(text); }
  }

  /** `?limit=` in the page's hash (1–250), else 25. */
  function pageSize(query) {
    var n = parseInt(query && query.limit, 10);
    return n >= 1 && n <= 250 ? n : 25;
  }

  function qs(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v != null && v !== "") parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  // ------------------------------------------------------------------ session

  function b64urlJson(part) {
    try {
      var s = part.replace(/-/g, "+").replace(/_/g, "/");
      while (s.length % 4) s += "=";
      return JSON.parse(decodeURIComponent(Array.prototype.map.call(atob(s), function (c) {
        return "%" + ("00" + c.charCodeAt(0).toString(16)).slice(-2);
      }).join("")));
    } catch (e) { return null; }
  }

  var session = { key: null, portal: null, claims: null, portalPage: false };

  function loadSession() {
    var params = new URLSearchParams(window.location.search);
    var fromUrl = params.get("portal");
    if (fromUrl) {
      // Keep the token out of the address bar, history and screenshots. An
      // empty `portal` stays, so a reload is still served as the (frameable) portal.
      storage.set(PORTAL, fromUrl);
      params.set("portal", "");
      window.history.replaceState(null, "", window.location.pathname + "?" + params.toString() + (window.location.hash || "#/endpoints"));
    }
    session.portalPage = params.has("portal");
    // The page decides the mode: a portal page (`/?portal…`) never falls back
    // to a console key kept in the same tab, and the console ignores portal tokens.
    session.portal = session.portalPage ? storage.get(PORTAL) : null;
    session.key = session.portalPage ? null : storage.get(KEY);
    session.claims = session.portal ? b64urlJson(session.portal.split(".")[1] || "") : null;
  }

  function isPortal() { return !!session.portal; }

  function credential() { return session.portal || session.key; }

  function signOut(message) {
    if (isPortal()) storage.del(PORTAL);
    else storage.del(KEY);
    endpointCache = null;
    loadSession();
    if (message) pendingNotice = message;
    if (window.location.hash !== "#/") window.location.hash = "#/";
    else render();
  }

  var pendingNotice = null;
  var flash = null; // a secret to show once, or a portal link

  // ------------------------------------------------------------------ API

  function ApiError(status, body) {
    this.status = status;
    this.body = body || {};
    this.message = (body && (body.detail || body.title)) || "HTTP " + status;
    this.fields = (body && body.errors) || [];
  }

  function api(method, path, body, token) {
    var headers = { accept: "application/json" };
    var cred = token || credential();
    if (cred) headers.authorization = "Bearer " + cred;
    var init = { method: method, headers: headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
        if (!res.ok) {
          var err = new ApiError(res.status, data);
          if (res.status === 401 && !token) {
            signOut(isPortal()
              ? "This portal link has expired or was revoked. Ask for a new link."
              : "Your session ended: the API key was not accepted. Sign in again.");
          }
          throw err;
        }
        return data;
      });
    }, function () {
      throw new ApiError(0, { detail: "Skyhook cannot be reached. Check your connection and try again." });
    });
  }

  function errorBox(err) {
    var box = h("div", { class: "alert alert-error", role: "alert" }, h("strong", { text: err.message || String(err) }));
    if (err.fields && err.fields.length) {
      box.appendChild(h("ul", {}, err.fields.map(function (f) { return h("li", {}, h("code", { text: f.field }), " " + f.message); })));
    }
    return box;
  }

  var endpointCache = null;

  /** Every endpoint the caller can see (up to 250), for names and filters. */
  function endpoints() {
    if (endpointCache) return Promise.resolve(endpointCache);
    return api("GET", "/v1/endpoints?limit=250").then(function (page) {
      endpointCache = page.data;
      return endpointCache;
    });
  }

  function endpointLabel(id) {
    var found = (endpointCache || []).filter(function (e) { return e.id === id; })[0];
    return found ? found.url : id;
  }

  // ------------------------------------------------------------------ dialogs

  function confirmDialog(title, message, confirmLabel, danger) {
    return new Promise(function (resolve) {
      var dialog = h("dialog", { "aria-labelledby": "dlg-title" },
        h("h2", { id: "dlg-title", text: title }),
        h("p", { text: message }),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "btn", "data-action": "cancel", text: "Cancel",
            onclick: function () { dialog.close("cancel"); } }),
          h("button", { type: "button", class: "btn " + (danger ? "btn-danger" : "btn-primary"), "data-action": "confirm",
            text: confirmLabel, onclick: function () { dialog.close("ok"); } })));
      dialog.addEventListener("close", function () {
        var ok = dialog.returnValue === "ok";
        dialog.remove();
        resolve(ok);
      });
      document.body.appendChild(dialog);
      dialog.showModal();
      dialog.querySelector("[data-action=confirm]").focus();
    });
  }

  function copyButton(text) {
    return h("button", {
      type: "button", class: "btn btn-small", text: "Copy",
      onclick: function (ev) {
        var btn = ev.currentTarget;
        var done = function () { btn.textContent = "Copied"; setTimeout(function () { btn.textContent = "Copy"; }, 2000); };
        if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).then(done, function () { toast("Copy failed: select the text instead", true); });
        else toast("Select the text and copy it", true);
      }
    });
  }

  // ------------------------------------------------------------------ page scaffolding

  var renderSeq = 0;

  function page(title, opts) {
    opts = opts || {};
    document.title = title + " · Skyhook" + (isPortal() ? " portal" : "");
    var head = h("div", { class: "page-head" },
      h("div", {},
        opts.crumbs ? h("div", { class: "crumbs" }, opts.crumbs) : null,
        h("h1", { tabindex: "-1", text: title, class: opts.mono ? "mono" : null }),
        opts.sub ? h("p", { class: "sub" }, opts.sub) : null),
      opts.actions ? h("div", { class: "actions" }, opts.actions) : null);
    clear(main).appendChild(head);
    if (pendingNotice) {
      main.appendChild(h("div", { class: "alert alert-ok", role: "status", text: pendingNotice }));
      pendingNotice = null;
    }
    return head;
  }

  function focusTitle() {
    var title = main.querySelector("h1");
    if (title) title.focus({ preventScroll: true });
  }

  function loading(container) {
    clear(container).appendChild(h("p", { class: "loading", text: "Loading…" }));
  }

  /** A pager over a cursor list: calls load(cursor) and renders rows. */
  function pagedTable(spec) {
    // spec: { columns: [..], row: fn(item) -> tr, load: fn(cursor) -> Promise<page>, empty: text, label }
    var stack = [];
    var cursor = null;
    var wrap = h("div", { class: "paged" });
    function show() {
      loading(wrap);
      spec.load(cursor).then(function (pageData) {
        clear(wrap);
        if (!pageData.data.length && !stack.length) {
          wrap.appendChild(h("p", { class: "empty", text: spec.empty }));
          return;
        }
        var table = h("table", {},
          h("caption", { class: "visually-hidden", text: spec.label }),
          h("thead", {}, h("tr", {}, spec.columns.map(function (c) {
            return h("th", { scope: "col", class: c.num ? "num" : null, text: c.label || c });
          }))),
          h("tbody", {}, pageData.data.map(spec.row)));
        wrap.appendChild(h("div", { class: "table-wrap" }, table));
        var prev = h("button", { type: "button", class: "btn btn-small", text: "← Newer", disabled: !stack.length,
          onclick: function () { cursor = stack.pop(); show(); } });
        var next = h("button", { type: "button", class: "btn btn-small", text: "Older →", disabled: !pageData.hasMore,
          "data-action": "next-page",
          onclick: function () { stack.push(cursor); cursor = pageData.nextCursor; show(); } });
        wrap.appendChild(h("div", { class: "pager" },
          h("span", { class: "muted", text: "Page " + (stack.length + 1) + " · " + pageData.data.length + " shown" }),
          h("div", { class: "actions" }, prev, next)));
      }, function (err) {
        clear(wrap).appendChild(h("div", { class: "loading" }, errorBox(err)));
      });
    }
    wrap.reload = function () { show(); };
    show();
    return wrap;
  }

  // ------------------------------------------------------------------ sign in

  function viewSignIn() {
    document.title = "Sign in · Skyhook";
    var input = h("input", { type: "password", id: "api-key", name: "apiKey", autocomplete: "off", required: true,
      spellcheck: "false", "aria-describedby": "api-key-hint" });
    var errorSlot = h("div");
    var button = h("button", { type: "submit", class: "btn btn-primary", text: "Sign in" });
    var form = h("form", { class: "panel signin", novalidate: true, onsubmit: function (ev) {
      ev.preventDefault();
      var key = input.value.trim();
      clear(errorSlot);
      if (!key) {
        input.setAttribute("aria-invalid", "true");
        errorSlot.appendChild(errorBox({ message: "Enter your API key." }));
        input.focus();
        return;
      }
      button.disabled = true;
      button.textContent = "Signing in…";
      api("GET", "/v1/endpoints?limit=1", undefined, key).then(ok, function (err) {
        if (err.status === 403 && !/admin token/.test(err.message)) return ok();
        throw err;
      }).catch(function (err) {
        button.disabled = false;
        button.textContent = "Sign in";
        input.setAttribute("aria-invalid", "true");
        var message = err.status === 401 ? "That API key was not accepted (unknown or revoked)."
          : err.status === 403 ? "This is the admin token. Sign in with an application API key." : err.message;
        errorSlot.appendChild(errorBox({ message: message }));
        input.focus();
      });
      function ok() {
        storage.set(KEY, key);
        loadSession();
        endpointCache = null;
        if (window.location.hash === "#/endpoints") render();
        else window.location.hash = "#/endpoints";
      }
    } },
      h("h1", { tabindex: "-1", text: "Sign in to Skyhook" }),
      h("p", { text: "Use an application API key. It stays in this browser tab only and is forgotten when you close it." }),
      errorSlot,
      h("div", { class: "field" },
        h("label", { for: "api-key", text: "API key" }),
        input,
        h("span", { class: "hint", id: "api-key-hint", text: "Keys are created with the admin token: POST /v1/applications/{appId}/api-keys." })),
      h("div", { class: "actions" }, button));
    clear(main).appendChild(form);
    if (pendingNotice) {
      errorSlot.appendChild(h("div", { class: "alert alert-ok", role: "status", text: pendingNotice }));
      pendingNotice = null;
    }
    input.focus();
  }

  function viewPortalGone() {
    document.title = "Portal · Skyhook";
    clear(main).appendChild(h("div", { class: "panel signin" },
      h("h1", { tabindex: "-1", text: "Webhook portal" }),
      h("p", { text: pendingNotice || "You have left the portal. Open your portal link again to come back." })));
    pendingNotice = null;
    focusTitle();
  }

  // ------------------------------------------------------------------ endpoints

  function viewEndpoints(query) {
    var portal = isPortal();
    page(portal ? "Your endpoints" : "Endpoints", {
      sub: portal ? "The webhook endpoints this portal link gives you access to." : "Where your events are delivered.",
      actions: portal ? null : h("a", { class: "btn btn-primary", href: "#/endpoints/new", text: "New endpoint" })
    });
    var status = h("select", { id: "f-active", name: "isActive" },
      h("option", { value: "", text: "All" }),
      h("option", { value: "true", text: "Active", selected: query.isActive === "true" }),
      h("option", { value: "false", text: "Disabled", selected: query.isActive === "false" }));
    var filters = h("form", { class: "filters", role: "search", "aria-label": "Filter endpoints", onsubmit: function (ev) {
      ev.preventDefault();
      window.location.hash = "#/endpoints" + qs({ isActive: status.value });
    } },
      h("div", { class: "f" }, h("label", { for: "f-active", text: "Status" }), status),
      h("div", { class: "f-actions" }, h("button", { type: "submit", class: "btn", text: "Apply" })));
    var table = pagedTable({
      label: "Endpoints",
      columns: ["Endpoint", "Event types", "Status", "Created"],
      empty: portal ? "No endpoints." : "No endpoints yet. Create one to start receiving webhooks.",
      load: function (cursor) {
        return api("GET", "/v1/endpoints" + qs({ isActive: query.isActive, limit: pageSize(query), cursor: cursor }));
      },
      row: function (e) {
        return h("tr", {},
          h("td", { class: "cell-url" },
            h("a", { class: "row-link", href: "#/endpoints/" + encodeURIComponent(e.id), text: e.url }),
            h("span", { class: "secondary", text: e.description || e.id })),
          h("td", {}, eventTypeTags(e.eventTypes)),
          h("td", {}, badge(e.isActive ? "active" : "disabled")),
          h("td", {}, time(e.createdAt)));
      }
    });
    main.appendChild(h("section", { class: "panel flush", "aria-label": "Endpoint list" }, filters, table));
    focusTitle();
  }

  function eventTypeTags(types) {
    if (!types || !types.length) return h("span", { class: "muted", text: "All events" });
    return h("div", { class: "tags" }, types.map(function (t) { return h("span", { class: "tag", text: t }); }));
  }

  function field(id, label, control, hint) {
    return h("div", { class: "field" + (control.dataset && control.dataset.wide ? " wide" : "") },
      h("label", { for: id, text: label }), control, hint ? h("span", { class: "hint", id: id + "-hint", text: hint }) : null);
  }

  function viewEndpointForm(id) {
    var editing = !!id;
    var portal = isPortal();
    var seq = renderSeq;
    page(editing ? "Edit endpoint" : "New endpoint", {
      crumbs: [h("a", { href: "#/endpoints", text: portal ? "Your endpoints" : "Endpoints" }), editing ? [" / ", h("a", { href: "#/endpoints/" + encodeURIComponent(id), class: "mono", text: id })] : null]
    });
    var body = h("div", { class: "panel" });
    main.appendChild(body);
    loading(body);
    focusTitle();
    var loadEndpoint = editing ? api("GET", "/v1/endpoints/" + encodeURIComponent(id)) : Promise.resolve(null);
    var loadTypes = portal ? Promise.resolve([]) : api("GET", "/v1/event-types?limit=250").then(function (p) { return p.data; }, function () { return []; });
    Promise.all([loadEndpoint, loadTypes]).then(function (results) {
      if (seq !== renderSeq) return;
      var e = results[0] || { url: "", description: "", eventTypes: [], maxAttempts: 8, timeoutSecs: 15, payloadFormat: "standard", isActive: true };
      var types = results[1];
      var url = h("input", { type: "url", id: "ep-url", name: "url", required: true, value: e.url, placeholder: "https://example.com/webhooks", "aria-describedby": "ep-url-hint" });
      url.dataset.wide = "1";
      var description = h("input", { type: "text", id: "ep-description", name: "description", value: e.description || "", maxlength: "1024" });
      description.dataset.wide = "1";
      var active = h("input", { type: "checkbox", id: "ep-active", name: "isActive", checked: e.isActive });
      var errorSlot = h("div");
      var controls = [
        field("ep-url", "URL", url, "The HTTPS address Skyhook POSTs each event to."),
        field("ep-description", "Description", description)
      ];
      var typeBoxes = [];
      var maxAttempts, timeout, format;
      if (!portal) {
        var fieldset = h("fieldset", { class: "field wide plain" }, h("legend", { text: "Event types" }));
        if (!types.length) fieldset.appendChild(h("span", { class: "hint", text: "No event types yet: the endpoint receives every event." }));
        else fieldset.appendChild(h("span", { class: "hint", text: "Leave all unchecked to receive every event type." }));
        var box = h("div", { class: "tags" });
        types.forEach(function (t, i) {
          var cb = h("input", { type: "checkbox", id: "ep-type-" + i, value: t.name, checked: e.eventTypes.indexOf(t.name) >= 0 });
          typeBoxes.push(cb);
          box.appendChild(h("label", { class: "check", for: "ep-type-" + i }, cb, h("span", { class: "mono", text: t.name })));
        });
        fieldset.appendChild(box);
        maxAttempts = h("input", { type: "number", id: "ep-max", name: "maxAttempts", min: "1", max: "20", value: String(e.maxAttempts) });
        timeout = h("input", { type: "number", id: "ep-timeout", name: "timeoutSecs", min: "1", max: "30", value: String(e.timeoutSecs) });
        format = h("select", { id: "ep-format", name: "payloadFormat" },
          h("option", { value: "standard", text: "Standard Webhooks envelope", selected: e.payloadFormat === "standard" }),
          h("option", { value: "raw", text: "Raw payload", selected: e.payloadFormat === "raw" }));
        controls.push(fieldset,
          field("ep-max", "Max attempts", maxAttempts, "1–20; retries back off from 5 s to 10 h."),
          field("ep-timeout", "Timeout (seconds)", timeout, "1–30"),
          field("ep-format", "Body format", format));
      }
      if (editing) controls.push(h("label", { class: "check wide", for: "ep-active" }, active, "Active (receives deliveries)"));
      var submit = h("button", { type: "submit", class: "btn btn-primary", text: editing ? "Save changes" : "Create endpoint" });
      var form = h("form", { novalidate: true, onsubmit: function (ev) {
        ev.preventDefault();
        clear(errorSlot);
        var payload = { url: url.value.trim(), description: description.value.trim() || (editing ? null : undefined) };
        if (editing) payload.isActive = active.checked;
        if (!portal) {
          payload.eventTypes = typeBoxes.filter(function (cb) { return cb.checked; }).map(function (cb) { return cb.value; });
          if (maxAttempts.value) payload.maxAttempts = Number(maxAttempts.value);
          if (timeout.value) payload.timeoutSecs = Number(timeout.value);
          payload.payloadFormat = format.value;
        }
        if (payload.description === undefined) delete payload.description;
        submit.disabled = true;
        var call = editing ? api("PATCH", "/v1/endpoints/" + encodeURIComponent(id), payload) : api("POST", "/v1/endpoints", payload);
        call.then(function (saved) {
          endpointCache = null;
          if (!editing) flash = { endpointId: saved.id, secret: saved.secret, created: true };
          else pendingNotice = "Endpoint saved.";
          window.location.hash = "#/endpoints/" + encodeURIComponent(saved.id);
        }, function (err) {
          submit.disabled = false;
          errorSlot.appendChild(errorBox(err));
          [["url", url], ["description", description], ["maxAttempts", maxAttempts], ["timeoutSecs", timeout]].forEach(function (pair) {
            if (pair[1]) pair[1].setAttribute("aria-invalid", err.fields.some(function (f) { return f.field === pair[0]; }) ? "true" : "false");
          });
          errorSlot.querySelector(".alert").setAttribute("tabindex", "-1");
          errorSlot.querySelector(".alert").focus();
        });
      } },
        errorSlot,
        h("div", { class: "form-grid" }, controls),
        h("div", { class: "actions" }, submit,
          h("a", { class: "btn btn-quiet", href: editing ? "#/endpoints/" + encodeURIComponent(id) : "#/endpoints", text: "Cancel" })));
      clear(body).appendChild(form);
      url.focus();
    }, function (err) {
      clear(body).appendChild(errorBox(err));
    });
  }

  function secretBox(title, secret, note) {
    return h("section", { class: "secret-box", role: "status", "aria-labelledby": "secret-title" },
      h("h2", { id: "secret-title", text: title }),
      h("p", { text: note }),
      h("div", { class: "secret-row" }, h("code", { id: "endpoint-secret", text: secret }), copyButton(secret)));
  }

  function viewEndpoint(id) {
    var portal = isPortal();
    var seq = renderSeq;
    var shown = flash && flash.endpointId === id ? flash : null;
    flash = null;
    page("Endpoint", { crumbs: [h("a", { href: "#/endpoints", text: portal ? "Your endpoints" : "Endpoints" }), " / ", h("span", { class: "mono", text: id })] });
    var body = h("div");
    main.appendChild(body);
    loading(body);
    focusTitle();
    api("GET", "/v1/endpoints/" + encodeURIComponent(id)).then(function (e) {
      if (seq !== renderSeq) return;
      clear(body);
      var title = main.querySelector("h1");
      title.textContent = e.url;
      title.classList.add("break");
      document.title = e.url + " · Skyhook";
      var sub = h("p", { class: "sub" }, badge(e.isActive ? "active" : "disabled"), " ", e.description || "");
      title.parentNode.appendChild(sub);
      var head = main.querySelector(".page-head");

      var actions = h("div", { class: "actions" });
      actions.appendChild(h("a", { class: "btn", href: "#/endpoints/" + encodeURIComponent(id) + "/edit", text: "Edit" }));
      actions.appendChild(h("button", { type: "button", class: "btn", "data-action": "send-test", text: "Send test event", onclick: function (ev) {
        var btn = ev.currentTarget;
        btn.disabled = true;
        api("POST", "/v1/endpoints/" + encodeURIComponent(id) + "/test", {}).then(function (evt) {
          btn.disabled = false;
          toast("Test event " + evt.id + " sent.");
          setTimeout(function () { if (seq === renderSeq) deliveries.reload(); }, 1200);
        }, function (err) { btn.disabled = false; toast(err.message, true); });
      } }));
      actions.appendChild(h("button", { type: "button", class: "btn", "data-action": "toggle-active", text: e.isActive ? "Disable" : "Enable", onclick: function () {
        var go = e.isActive
          ? confirmDialog("Disable endpoint?", "Deliveries to " + e.url + " stop until you enable it again; queued deliveries are recorded as failed.", "Disable", true)
          : Promise.resolve(true);
        go.then(function (ok) {
          if (!ok) return;
          api("PATCH", "/v1/endpoints/" + encodeURIComponent(id), { isActive: !e.isActive }).then(function () {
            endpointCache = null;
            pendingNotice = e.isActive ? "Endpoint disabled." : "Endpoint enabled.";
            render();
          }, function (err) { toast(err.message, true); });
        });
      } }));
      if (!portal) {
        actions.appendChild(h("button", { type: "button", class: "btn", "data-action": "rotate-secret", text: "Rotate secret", onclick: function () {
          confirmDialog("Rotate the signing secret?", "A new secret is generated. The old one keeps signing alongside it for 24 hours, so receivers can switch over.", "Rotate").then(function (ok) {
            if (!ok) return;
            api("POST", "/v1/endpoints/" + encodeURIComponent(id) + "/rotate-secret", {}).then(function (r) {
              flash = { endpointId: id, secret: r.secret, rotated: true };
              render();
            }, function (err) { toast(err.message, true); });
          });
        } }));
        actions.appendChild(h("button", { type: "button", class: "btn", "data-action": "portal-link", text: "Portal link", onclick: function () {
          api("POST", "/v1/portal/sessions", { endpointIds: [id] }).then(function (s) {
            flash = { endpointId: id, portal: s };
            render();
          }, function (err) { toast(err.message, true); });
        } }));
        actions.appendChild(h("button", { type: "button", class: "btn btn-danger", "data-action": "delete", text: "Delete", onclick: function () {
          confirmDialog("Delete endpoint?", "This deletes " + e.url + ". Its delivery history stays until it expires. This cannot be undone.", "Delete", true).then(function (ok) {
            if (!ok) return;
            api("DELETE", "/v1/endpoints/" + encodeURIComponent(id)).then(function () {
              endpointCache = null;
              pendingNotice = "Endpoint deleted.";
              window.location.hash = "#/endpoints";
            }, function (err) { toast(err.message, true); });
          });
        } }));
      }
      head.appendChild(actions);

      if (shown && shown.secret) {
        body.appendChild(secretBox(shown.created ? "Endpoint created: copy its signing secret" : "New signing secret",
          shown.secret, "This is the only time the secret is shown. Receivers verify each webhook's signature with it." +
          (shown.rotated ? " The previous secret keeps signing for 24 hours." : "")));
      }
      if (shown && shown.portal) {
        var link = window.location.origin + shown.portal.url;
        body.appendChild(h("section", { class: "secret-box", "aria-labelledby": "portal-title" },
          h("h2", { id: "portal-title", text: "Portal link" }),
          h("p", { text: "Anyone with this link can view this endpoint and its deliveries, retry them, send test events and change the URL until " + fmtTime(shown.portal.expiresAt) + ". Revoking your API key revokes the link." }),
          h("div", { class: "secret-row" }, h("code", { id: "portal-url", text: link }), copyButton(link),
            h("a", { class: "btn btn-small", id: "open-portal", href: shown.portal.url, target: "_blank", rel: "noopener", text: "Open" }))));
      }
      if (!e.isActive && e.disabledReason) {
        body.appendChild(h("div", { class: "alert alert-error", text: "Disabled: " + e.disabledReason }));
      }

      var props = h("dl", { class: "props" },
        h("dt", { text: "ID" }), h("dd", { class: "mono", text: e.id }),
        h("dt", { text: "Event types" }), h("dd", {}, eventTypeTags(e.eventTypes)),
        h("dt", { text: "Signing secret" }), h("dd", { class: "mono", text: "whsec_…" + e.secretLast4 }),
        h("dt", { text: "Max attempts" }), h("dd", { text: String(e.maxAttempts) }),
        h("dt", { text: "Timeout" }), h("dd", { text: e.timeoutSecs + " s" }),
        h("dt", { text: "Body format" }), h("dd", { text: e.payloadFormat }),
        h("dt", { text: "Created" }), h("dd", {}, time(e.createdAt)),
        h("dt", { text: "Updated" }), h("dd", {}, time(e.updatedAt)));
      var healthPanel = h("section", { class: "panel", "aria-labelledby": "health-title", id: "health" });
      var chartPanel = h("section", { class: "panel", "aria-labelledby": "stats-title", id: "stats" });
      body.appendChild(h("div", { class: "grid-2" },
        h("section", { class: "panel", "aria-labelledby": "props-title" }, h("h2", { id: "props-title", text: "Details" }), props),
        healthPanel));
      body.appendChild(chartPanel);
      renderStats(healthPanel, chartPanel, id, 24);

      var deliveries = deliveriesTable({ endpointId: id }, { hideEndpoint: true });
      var retryAll = h("button", { type: "button", class: "btn btn-small", "data-action": "retry-failed", text: "Retry failed", onclick: function () {
        bulkRetry({ endpointId: id }, function () { deliveries.reload(); });
      } });
      body.appendChild(h("section", { class: "panel flush", "aria-labelledby": "ep-deliveries-title" },
        h("div", { class: "panel-head" }, h("h2", { id: "ep-deliveries-title", text: "Recent deliveries" }),
          h("div", { class: "actions" }, retryAll,
            h("a", { class: "btn btn-small", href: "#/deliveries" + qs({ endpointId: id }), text: "All deliveries" }))),
        deliveries));
    }, function (err) {
      clear(body).appendChild(errorBox(err));
    });
  }

  function renderStats(health, panel, id, hours) {
    clear(panel);
    clear(health);
    var period = hours === 24 ? "last 24 hours" : "last 7 days";
    var range = h("div", { class: "range", role: "group", "aria-label": "Time range" },
      [[24, "24 h"], [168, "7 days"]].map(function (r) {
        return h("button", { type: "button", "aria-pressed": r[0] === hours ? "true" : "false", text: r[1],
          onclick: function () { renderStats(health, panel, id, r[0]); } });
      }));
    panel.appendChild(h("div", { class: "panel-head" }, h("h2", { id: "stats-title", text: "Attempts and latency per hour" }), range));
    health.appendChild(h("h2", { id: "health-title", text: "Health, " + period }));
    var healthSlot = h("div");
    health.appendChild(healthSlot);
    loading(healthSlot);
    var slot = h("div");
    panel.appendChild(slot);
    loading(slot);
    var now = new Date();
    var end = new Date(now.getTime());
    end.setMinutes(0, 0, 0);
    var since = new Date(end.getTime() - (hours - 1) * 3600e3);
    api("GET", "/v1/endpoints/" + encodeURIComponent(id) + "/stats" + qs({ since: since.toISOString() })).then(function (s) {
      clear(slot);
      clear(healthSlot);
      var rate = s.attempts ? (100 * s.successfulAttempts / s.attempts) : null;
      var cards = h("div", { class: "stats" },
        stat("Success rate", rate == null ? "—" : (rate >= 99.95 || rate === 0 ? rate.toFixed(0) : rate.toFixed(1)) + " %", "stat-rate",
          rate == null ? null : rate >= 99 ? "good" : rate >= 90 ? "fair" : "poor"),
        stat("Deliveries", String(s.deliveries), "stat-deliveries"),
        stat("Avg latency", fmtMs(s.avgLatencyMs), "stat-avg"),
        stat("p95 latency", fmtMs(s.p95LatencyMs), "stat-p95"));
      healthSlot.appendChild(cards);
      healthSlot.appendChild(h("dl", { class: "props" },
        h("dt", { text: "Attempts" }), h("dd", { text: s.attempts + " (" + s.successfulAttempts + " succeeded, " + s.failedAttempts + " failed)" }),
        h("dt", { text: "Deliveries" }), h("dd", { text: s.succeeded + " succeeded · " + s.failed + " failed · " + (s.pending + s.retrying) + " in progress" }),
        h("dt", { text: "Last success" }), h("dd", {}, time(s.lastSuccessAt)),
        h("dt", { text: "Last failure" }), h("dd", {}, time(s.lastFailureAt))));
      // One bucket per hour, gaps filled with zeros.
      var byHour = {};
      (s.hourly || []).forEach(function (b) { byHour[Math.floor(new Date(b.start).getTime() / 3600e3)] = b; });
      var buckets = [];
      for (var t = since.getTime(); t <= end.getTime(); t += 3600e3) {
        var b = byHour[Math.floor(t / 3600e3)];
        buckets.push({ start: new Date(t), succeeded: b ? b.succeeded : 0, failed: b ? b.failed : 0, avgLatencyMs: b ? b.avgLatencyMs : null });
      }
      var description = s.attempts + " attempts in the last " + (hours === 24 ? "24 hours" : "7 days") + ": " +
        s.successfulAttempts + " succeeded, " + s.failedAttempts + " failed" + (s.avgLatencyMs != null ? "; average latency " + fmtMs(s.avgLatencyMs) : "") + ".";
      if (window.SkyhookChart) {
        slot.appendChild(window.SkyhookChart.draw(buckets, { title: "Attempts per hour and average latency", description: description }));
      }
      slot.appendChild(h("div", { class: "legend", "aria-hidden": "true" },
        h("span", {}, h("span", { class: "sw sw-ok" }), "Succeeded"),
        h("span", {}, h("span", { class: "sw sw-bad" }), "Failed"),
        h("span", {}, h("span", { class: "sw sw-lat" }), "Avg latency (right axis)")));
      var rows = buckets.filter(function (b) { return b.succeeded || b.failed; });
      slot.appendChild(h("details", { class: "data" }, h("summary", { text: "Data table (" + rows.length + " hours with attempts)" }),
        h("table", {}, h("thead", {}, h("tr", {}, ["Hour", "Succeeded", "Failed", "Avg latency"].map(function (c) { return h("th", { scope: "col", text: c }); }))),
          h("tbody", {}, rows.map(function (b) {
            return h("tr", {}, h("td", {}, time(b.start.toISOString())), h("td", { class: "num", text: String(b.succeeded) }),
              h("td", { class: "num", text: String(b.failed) }), h("td", { class: "num", text: fmtMs(b.avgLatencyMs) }));
          })))));
    }, function (err) {
      clear(healthSlot);
      clear(slot).appendChild(errorBox(err));
    });
  }

  function stat(label, value, id, tone) {
    return h("div", { class: "stat" + (tone ? " stat-" + tone : ""), id: id },
      h("div", { class: "label", text: label }), h("div", { class: "value", text: value }));
  }

  // ------------------------------------------------------------------ deliveries

  function deliveriesTable(filter, opts) {
    opts = opts || {};
    var columns = ["Status", "Event type"];
    if (!opts.hideEndpoint) columns.push("Endpoint");
    columns.push({ label: "Attempts", num: true }, "Last response", "Created");
    return pagedTable({
      label: "Deliveries",
      columns: columns,
      empty: "No deliveries match.",
      load: function (cursor) {
        var params = Object.assign({}, filter, { limit: opts.limit || 25, cursor: cursor });
        var path = "/v1/deliveries";
        if (filter.endpointId && opts.hideEndpoint) {
          path = "/v1/endpoints/" + encodeURIComponent(filter.endpointId) + "/deliveries";
          delete params.endpointId;
        }
        var ready = opts.hideEndpoint ? Promise.resolve() : endpoints().catch(function () { return []; });
        return ready.then(function () { return api("GET", path + qs(params)); });
      },
      row: function (d) {
        return h("tr", { "data-delivery": d.id, "data-status": d.status },
          h("td", {}, h("a", { class: "row-link", href: "#/deliveries/" + encodeURIComponent(d.id), "aria-label": "Delivery " + d.id + ", " + d.status }, badge(d.status)),
            d.retryOf ? h("span", { class: "secondary", text: "retry" }) : null),
          h("td", {}, h("span", { class: "mono", text: d.eventType }), h("span", { class: "secondary mono", text: d.id })),
          opts.hideEndpoint ? null : h("td", { class: "cell-url" }, h("a", { href: "#/endpoints/" + encodeURIComponent(d.endpointId), text: endpointLabel(d.endpointId) })),
          h("td", { class: "num", text: d.attemptCount + " / " + d.maxAttempts }),
          h("td", {}, responseBadge(d.responseStatus)),
          h("td", {}, time(d.createdAt)));
      }
    });
  }

  function bulkRetry(filter, done) {
    var what = filter.endpointId ? "this endpoint's failed deliveries" : "every failed delivery matching the filters";
    confirmDialog("Retry failed deliveries?", "Starts a new attempt chain for " + what + " that were not retried yet.", "Retry").then(function (ok) {
      if (!ok) return;
      var body = {};
      ["endpointId", "eventType", "from", "to"].forEach(function (k) { if (filter[k]) body[k] = filter[k]; });
      api("POST", "/v1/deliveries/retry", body).then(function (r) {
        toast(r.retried === 0 ? "No failed deliveries to retry." : "Retrying " + r.retried + " deliveries" + (r.truncated ? " (more remain: run again)" : "") + ".");
        if (done) done();
      }, function (err) { toast(err.message, true); });
    });
  }

  function viewDeliveries(query) {
    var portal = isPortal();
    page("Deliveries", {
      sub: "Every event sent to every endpoint, newest first.",
      actions: h("button", { type: "button", class: "btn", "data-action": "bulk-retry", text: "Retry failed", onclick: function () {
        if (portal && !query.endpointId) { toast("Choose an endpoint first.", true); return; }
        bulkRetry(query, function () { table.reload(); });
      } })
    });
    var status = h("select", { id: "f-status", name: "status" },
      ["", "pending", "retrying", "succeeded", "failed"].map(function (s) {
        return h("option", { value: s, text: s || "Any", selected: query.status === s });
      }));
    var eventType = h("input", { type: "text", id: "f-type", name: "eventType", value: query.eventType || "", placeholder: "e.g. order.created" });
    var endpointSel = h("select", { id: "f-endpoint", name: "endpointId" }, h("option", { value: "", text: "Any" }));
    if (query.endpointId) endpointSel.appendChild(h("option", { value: query.endpointId, text: query.endpointId, selected: true }));
    endpoints().then(function (list) {
      clear(endpointSel).appendChild(h("option", { value: "", text: "Any" }));
      list.forEach(function (e) { endpointSel.appendChild(h("option", { value: e.id, text: e.url, selected: query.endpointId === e.id })); });
    }, function () { /* names are a nicety */ });
    var from = h("input", { type: "datetime-local", id: "f-from", name: "from", value: toLocalInput(query.from) });
    var to = h("input", { type: "datetime-local", id: "f-to", name: "to", value: toLocalInput(query.to) });
    var filters = h("form", { class: "filters", role: "search", "aria-label": "Filter deliveries", onsubmit: function (ev) {
      ev.preventDefault();
      window.location.hash = "#/deliveries" + qs({ status: status.value, eventType: eventType.value.trim(), endpointId: endpointSel.value,
        from: fromLocalInput(from.value), to: fromLocalInput(to.value) });
    } },
      h("div", { class: "f" }, h("label", { for: "f-status", text: "Status" }), status),
      h("div", { class: "f" }, h("label", { for: "f-type", text: "Event type" }), eventType),
      h("div", { class: "f" }, h("label", { for: "f-endpoint", text: "Endpoint" }), endpointSel),
      h("div", { class: "f" }, h("label", { for: "f-from", text: "From" }), from),
      h("div", { class: "f" }, h("label", { for: "f-to", text: "To" }), to),
      h("div", { class: "f-actions" },
        h("button", { type: "submit", class: "btn btn-primary", text: "Apply" }),
        h("a", { class: "btn btn-quiet", href: "#/deliveries", text: "Reset" })));
    var filter = {};
    ["status", "eventType", "endpointId", "from", "to"].forEach(function (k) { if (query[k]) filter[k] = query[k]; });
    var table = deliveriesTable(filter, { limit: pageSize(query) });
    main.appendChild(h("section", { class: "panel flush", "aria-label": "Delivery log" }, filters, table));
    focusTitle();
  }

  function viewDelivery(id) {
    var portal = isPortal();
    var seq = renderSeq;
    page("Delivery", { mono: true, crumbs: [h("a", { href: "#/deliveries", text: "Deliveries" }), " / ", h("span", { class: "mono", text: id })] });
    var body = h("div");
    main.appendChild(body);
    loading(body);
    focusTitle();
    Promise.all([api("GET", "/v1/deliveries/" + encodeURIComponent(id)), endpoints().catch(function () { return []; })]).then(function (res) {
      if (seq !== renderSeq) return;
      var d = res[0];
      clear(body);
      var head = main.querySelector(".page-head");
      var title = main.querySelector("h1");
      title.textContent = d.eventType;
      title.parentNode.appendChild(h("p", { class: "sub" }, badge(d.status), " ", h("span", { class: "mono", text: d.id })));
      var canRetry = (d.status === "succeeded" || d.status === "failed") && !d.retriedBy;
      head.appendChild(h("div", { class: "actions" },
        h("button", { type: "button", class: "btn btn-primary", "data-action": "retry", text: "Retry", disabled: !canRetry,
          title: canRetry ? null : d.retriedBy ? "Already retried" : "Only finished deliveries can be retried",
          onclick: function (ev) {
            ev.currentTarget.disabled = true;
            api("POST", "/v1/deliveries/" + encodeURIComponent(id) + "/retry", {}).then(function (retry) {
              pendingNotice = "Retry started: this is the new delivery. The original is " + id + ".";
              window.location.hash = "#/deliveries/" + encodeURIComponent(retry.id);
            }, function (err) { toast(err.message, true); });
          } }),
        h("button", { type: "button", class: "btn", "data-action": "refresh", text: "Refresh", onclick: function () { render(); } })));

      var link = function (href, text) { return h("a", { href: href, class: "mono", text: text }); };
      var props = h("dl", { class: "props" },
        h("dt", { text: "Status" }), h("dd", {}, badge(d.status)),
        h("dt", { text: "Endpoint" }), h("dd", { class: "break" }, link("#/endpoints/" + encodeURIComponent(d.endpointId), endpointLabel(d.endpointId))),
        h("dt", { text: "Event" }), h("dd", {}, portal ? h("span", { class: "mono", text: d.eventId }) : link("#/events/" + encodeURIComponent(d.eventId), d.eventId)),
        h("dt", { text: "Attempts" }), h("dd", { text: d.attemptCount + " of " + d.maxAttempts }),
        h("dt", { text: "Last response" }), h("dd", {}, responseBadge(d.responseStatus)),
        d.errorMessage ? [h("dt", { text: "Error" }), h("dd", { text: d.errorMessage })] : null,
        d.nextAttemptAt ? [h("dt", { text: "Next attempt" }), h("dd", {}, time(d.nextAttemptAt))] : null,
        d.deliveredAt ? [h("dt", { text: "Delivered" }), h("dd", {}, time(d.deliveredAt))] : null,
        d.retryOf ? [h("dt", { text: "Retry of" }), h("dd", {}, link("#/deliveries/" + encodeURIComponent(d.retryOf), d.retryOf))] : null,
        d.retriedBy ? [h("dt", { text: "Retried as" }), h("dd", {}, link("#/deliveries/" + encodeURIComponent(d.retriedBy), d.retriedBy))] : null,
        h("dt", { text: "Created" }), h("dd", {}, time(d.createdAt)),
        h("dt", { text: "Kept until" }), h("dd", {}, time(d.expiresAt)));

      var attempts = h("section", { class: "panel", "aria-labelledby": "attempts-title", id: "attempts" },
        h("h2", { id: "attempts-title", text: "Attempts (" + d.attempts.length + ")" }));
      if (!d.attempts.length) attempts.appendChild(h("p", { class: "muted", text: d.status === "pending" ? "Not sent yet." : "No attempts recorded." }));
      d.attempts.slice().reverse().forEach(function (a, i) {
        var response = pretty(a.response);
        attempts.appendChild(h("details", { class: "attempt", "data-attempt": a.number, open: i === 0 },
          h("summary", {},
            h("strong", { text: "Attempt " + a.number }),
            responseBadge(a.responseStatus),
            h("span", { class: "muted", text: fmtMs(a.durationMs) }),
            time(a.startedAt)),
          h("div", { class: "body" },
            h("dl", { class: "props" },
              h("dt", { text: "Started" }), h("dd", {}, time(a.startedAt)),
              h("dt", { text: "Duration" }), h("dd", { text: fmtMs(a.durationMs) }),
              h("dt", { text: "Response status" }), h("dd", {}, responseBadge(a.responseStatus)),
              a.error ? [h("dt", { text: "Error" }), h("dd", { class: "attempt-error", text: a.error })] : null,
              a.nextDelaySecs != null ? [h("dt", { text: "Next try after" }), h("dd", { text: a.nextDelaySecs + " s" })] : null),
            h("h3", { text: "Response body" }),
            response ? h("pre", { class: "code attempt-response", text: response }) : h("p", { class: "muted", text: "Empty." }))));
      });

      body.appendChild(h("div", { class: "grid-2" },
        h("section", { class: "panel", "aria-labelledby": "d-props-title" }, h("h2", { id: "d-props-title", text: "Delivery" }), props),
        attempts));
      if (!portal) {
        var payloadSlot = h("section", { class: "panel", "aria-labelledby": "payload-title" }, h("h2", { id: "payload-title", text: "Event payload" }));
        body.appendChild(payloadSlot);
        api("GET", "/v1/events/" + encodeURIComponent(d.eventId)).then(function (evt) {
          payloadSlot.appendChild(h("pre", { class: "code", text: JSON.stringify(evt.payload, null, 2) }));
        }, function (err) { payloadSlot.appendChild(h("p", { class: "muted", text: err.message })); });
      }
    }, function (err) {
      clear(body).appendChild(errorBox(err));
    });
  }

  // ------------------------------------------------------------------ events

  function viewEvents(query) {
    page("Events", { sub: "Everything your application published, newest first." });
    var eventType = h("input", { type: "text", id: "f-type", name: "eventType", value: query.eventType || "", placeholder: "e.g. order.created" });
    var status = h("select", { id: "f-status", name: "status" },
      ["", "pending", "succeeded", "failed"].map(function (s) { return h("option", { value: s, text: s || "Any", selected: query.status === s }); }));
    var from = h("input", { type: "datetime-local", id: "f-from", name: "from", value: toLocalInput(query.from) });
    var to = h("input", { type: "datetime-local", id: "f-to", name: "to", value: toLocalInput(query.to) });
    var filters = h("form", { class: "filters", role: "search", "aria-label": "Filter events", onsubmit: function (ev) {
      ev.preventDefault();
      window.location.hash = "#/events" + qs({ eventType: eventType.value.trim(), status: status.value, from: fromLocalInput(from.value), to: fromLocalInput(to.value) });
    } },
      h("div", { class: "f" }, h("label", { for: "f-type", text: "Event type" }), eventType),
      h("div", { class: "f" }, h("label", { for: "f-status", text: "Status" }), status),
      h("div", { class: "f" }, h("label", { for: "f-from", text: "From" }), from),
      h("div", { class: "f" }, h("label", { for: "f-to", text: "To" }), to),
      h("div", { class: "f-actions" },
        h("button", { type: "submit", class: "btn btn-primary", text: "Apply" }),
        h("a", { class: "btn btn-quiet", href: "#/events", text: "Reset" })));
    var table = pagedTable({
      label: "Events",
      columns: ["Event", "Status", { label: "Deliveries", num: true }, "Created"],
      empty: "No events match.",
      load: function (cursor) {
        return api("GET", "/v1/events" + qs({ eventType: query.eventType, status: query.status, from: query.from, to: query.to, limit: pageSize(query), cursor: cursor }));
      },
      row: function (e) {
        return h("tr", { "data-event": e.id },
          h("td", {}, h("a", { class: "row-link mono", href: "#/events/" + encodeURIComponent(e.id), text: e.eventType }),
            h("span", { class: "secondary mono", text: e.id })),
          h("td", {}, badge(e.status)),
          h("td", { class: "num" }, e.deliveryCount + "", h("span", { class: "secondary", text: e.succeededCount + " ok · " + e.failedCount + " failed" })),
          h("td", {}, time(e.createdAt)));
      }
    });
    main.appendChild(h("section", { class: "panel flush", "aria-label": "Event log" }, filters, table));
    focusTitle();
  }

  function viewEvent(id) {
    var seq = renderSeq;
    page("Event", { crumbs: [h("a", { href: "#/events", text: "Events" }), " / ", h("span", { class: "mono", text: id })] });
    var body = h("div");
    main.appendChild(body);
    loading(body);
    focusTitle();
    api("GET", "/v1/events/" + encodeURIComponent(id)).then(function (e) {
      if (seq !== renderSeq) return;
      clear(body);
      var title = main.querySelector("h1");
      title.textContent = e.eventType;
      title.classList.add("mono");
      title.parentNode.appendChild(h("p", { class: "sub" }, badge(e.status), " ", h("span", { class: "mono", text: e.id })));
      var props = h("dl", { class: "props" },
        h("dt", { text: "ID" }), h("dd", { class: "mono", text: e.id }),
        h("dt", { text: "Status" }), h("dd", {}, badge(e.status)),
        h("dt", { text: "Deliveries" }), h("dd", { text: e.deliveryCount + " (" + e.succeededCount + " succeeded, " + e.failedCount + " failed)" }),
        e.idempotencyKey ? [h("dt", { text: "Idempotency key" }), h("dd", { class: "mono", text: e.idempotencyKey })] : null,
        e.targetEndpointId ? [h("dt", { text: "Test for" }), h("dd", {}, h("a", { class: "mono", href: "#/endpoints/" + encodeURIComponent(e.targetEndpointId), text: e.targetEndpointId }))] : null,
        h("dt", { text: "Created" }), h("dd", {}, time(e.createdAt)),
        h("dt", { text: "Kept until" }), h("dd", {}, time(e.expiresAt)));
      body.appendChild(h("div", { class: "grid-2" },
        h("section", { class: "panel", "aria-labelledby": "e-props" }, h("h2", { id: "e-props", text: "Event" }), props),
        h("section", { class: "panel", "aria-labelledby": "e-payload" }, h("h2", { id: "e-payload", text: "Payload" }),
          h("pre", { class: "code", text: JSON.stringify(e.payload, null, 2) }))));
      body.appendChild(h("section", { class: "panel flush", "aria-labelledby": "e-deliveries" },
        h("div", { class: "panel-head" }, h("h2", { id: "e-deliveries", text: "Deliveries" })),
        deliveriesTable({ eventId: id })));
    }, function (err) {
      clear(body).appendChild(errorBox(err));
    });
  }

  // ------------------------------------------------------------------ router

  function parseHash() {
    var raw = (window.location.hash || "").replace(/^#/, "");
    var q = raw.indexOf("?");
    var path = q >= 0 ? raw.slice(0, q) : raw;
    var query = {};
    new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "").forEach(function (v, k) { query[k] = v; });
    return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: query };
  }

  function chrome() {
    var signedIn = !!credential();
    var portal = isPortal();
    document.getElementById("nav").hidden = !signedIn;
    document.getElementById("session").hidden = !signedIn;
    var mode = document.getElementById("mode-label");
    mode.hidden = !portal;
    mode.textContent = portal ? "Webhook portal" : "";
    Array.prototype.forEach.call(document.querySelectorAll("[data-console-only]"), function (el) { el.hidden = portal; });
    document.getElementById("sign-out").textContent = portal ? "Leave portal" : "Sign out";
    var label = document.getElementById("session-label");
    if (portal) {
      var exp = session.claims && session.claims.exp ? new Date(session.claims.exp * 1000).toISOString() : null;
      label.textContent = exp ? "Link valid until " + fmtTime(exp) : "Portal session";
    } else if (session.key) {
      label.textContent = "Key …" + session.key.slice(-4);
    }
    var current = parseHash().parts[0] || "endpoints";
    Array.prototype.forEach.call(document.querySelectorAll("[data-nav]"), function (a) {
      if (a.getAttribute("data-nav") === current) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
  }

  function render() {
    renderSeq++;
    document.querySelectorAll("dialog").forEach(function (d) { d.close(); });
    chrome();
    if (!credential()) {
      if (session.portalPage || (pendingNotice && /portal/.test(pendingNotice))) return viewPortalGone();
      return viewSignIn();
    }
    var route = parseHash();
    var p = route.parts;
    if (!p.length) { window.location.replace("#/endpoints"); return; }
    switch (p[0]) {
      case "endpoints":
        if (p.length === 1) return viewEndpoints(route.query);
        if (p[1] === "new" && !isPortal()) return viewEndpointForm(null);
        if (p[2] === "edit") return viewEndpointForm(p[1]);
        return viewEndpoint(p[1]);
      case "deliveries":
        return p.length === 1 ? viewDeliveries(route.query) : viewDelivery(p[1]);
      case "events":
        if (isPortal()) break;
        return p.length === 1 ? viewEvents(route.query) : viewEvent(p[1]);
    }
    page("Not found", { sub: "There is no such page." });
    main.appendChild(h("p", {}, h("a", { href: "#/endpoints", text: "Go to endpoints" })));
    focusTitle();
  }

  document.getElementById("sign-out").addEventListener("click", function () {
    signOut(isPortal() ? "You have left the portal. Open your portal link again to come back." : "Signed out.");
  });
  window.addEventListener("hashchange", function () {
    toastEl.hidden = true;
    render();
  });
  loadSession();
  render();
})();
