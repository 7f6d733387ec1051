// recapture custom pixel: paste into Shopify admin → Settings → Customer events → Add custom pixel.
// It forwards every standard event, with the customer, consent and Klaviyo's cookie, to your recapture server.
(function () {
  var ENDPOINT = "__RECAPTURE_ENDPOINT__";
  // null: use the shop of the storefront (init.data.shop.myshopifyDomain).
  var SHOP = "__RECAPTURE_SHOP__";
  var MAX_BATCH = 20;            // envelopes per request
  // Browsers refuse a keepalive request once the bodies of all keepalive requests in flight would pass 64 KiB
  // (UTF-8 bytes, not characters); the refused fetch just fails. Stay under it, with room to spare.
  var KEEPALIVE_BUDGET_BYTES = 60000;
  var MAX_BATCH_BYTES = KEEPALIVE_BUDGET_BYTES;
  var FLUSH_DELAY_MS = 250;      // gathers bursts (page_viewed + product_viewed) into one request
  var COOKIES = ["__kla_id"];

  var shop = SHOP || (init && init.data && init.data.shop && init.data.shop.myshopifyDomain) || null;
  var customer = (init && init.data && init.data.customer) || null;
  var consent = (init && init.customerPrivacy) || null;
  var queue = [];                // serialized envelopes: {text, bytes}
  var timer = null;
  var inflight = 0;              // body bytes of our keepalive requests not yet finished

  function byteLength(text) {
    if (typeof TextEncoder !== "undefined") { return new TextEncoder().encode(text).length; }
    var bytes = 0;
    for (var i = 0; i < text.length; i++) {
      var code = text.charCodeAt(i);
      if (code < 0x80) { bytes += 1; }
      else if (code < 0x800) { bytes += 2; }
      else if (code >= 0xd800 && code < 0xdc00) { bytes += 4; i++; }
      else { bytes += 3; }
    }
    return bytes;
  }

  function readCookies() {
    var reads = COOKIES.map(function (name) {
      return new Promise(function (resolve) { resolve(browser.cookie.get(name)); }).then(
        function (value) { return [name, value || ""]; },
        function () { return [name, ""]; }
      );
    });
    return Promise.all(reads).then(function (pairs) {
      var cookies = {};
      pairs.forEach(function (pair) { if (pair[1]) { cookies[pair[0]] = pair[1]; } });
      return cookies;
    });
  }

  function send(batch) {
    var body = batch.length === 1 ? batch[0].text
      : '{"batch":[' + batch.map(function (item) { return item.text; }).join(",") + "]}";
    var bytes = byteLength(body);
    // Past the budget a keepalive fetch is refused outright; a plain one still arrives while the page lives.
    var keepalive = inflight + bytes <= KEEPALIVE_BUDGET_BYTES;
    if (keepalive) { inflight += bytes; }
    function settle() { if (keepalive) { inflight -= bytes; } }
    // text/plain keeps this a simple CORS request: no preflight, which keepalive requests handle badly.
    return fetch(ENDPOINT, {
      method: "POST",
      body: body,
      keepalive: keepalive,
      headers: { "content-type": "text/plain;charset=UTF-8" },
    })
      // The browser counts a keepalive request against its quota until the response has been read.
      .then(function (response) { return response.text(); })
      .then(settle, settle);
    // On failure the next event retries nothing: Shopify's webhooks cover checkout and orders.
  }

  function flush() {
    if (timer) { clearTimeout(timer); timer = null; }
    while (queue.length) {
      var batch = [];
      var size = 12;             // {"batch":[ ... ]}
      while (queue.length && batch.length < MAX_BATCH) {
        var next = queue[0].bytes + 1;
        if (batch.length && size + next > MAX_BATCH_BYTES) { break; }
        batch.push(queue.shift());
        size += next;
      }
      send(batch);
    }
  }

  function enqueue(event) {
    // The customer and consent of this moment belong to this event, however long the cookie read takes.
    var envelope = { shop: shop, event: event, customer: customer, consent: consent, cookies: {} };
    readCookies().then(function (cookies) {
      envelope.cookies = cookies;
      var text = JSON.stringify(envelope);
      queue.push({ text: text, bytes: byteLength(text) });
      // The purchase must not wait: the thank-you page may be closed at once.
      if (event.name === "checkout_completed" || queue.length >= MAX_BATCH) { flush(); }
      else if (!timer) { timer = setTimeout(flush, FLUSH_DELAY_MS); }
    });
  }

  analytics.subscribe("all_standard_events", enqueue);

  // Leaving the page must not drop the events still waiting for the batch timer (keepalive carries them out).
  if (typeof addEventListener === "function") {
    addEventListener("pagehide", flush);
    addEventListener("visibilitychange", function () {
      if (typeof document !== "undefined" && document.visibilityState === "hidden") { flush(); }
    });
  }

  var privacy = (typeof customerPrivacy !== "undefined" && customerPrivacy) ||
    (typeof api !== "undefined" && api && api.customerPrivacy) || null;
  if (privacy && typeof privacy.subscribe === "function") {
    privacy.subscribe("visitorConsentCollected", function (payload) {
      consent = (payload && payload.customerPrivacy) || payload || consent;
    });
  }
})();
