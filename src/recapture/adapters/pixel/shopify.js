// recapture custom pixel: paste into Shopify admin → Settings → Customer events → Add custom pixel.
// It forwards every standard event, with the customer, consent and Klaviyo's cookie, to your recapture server.
(function () {
  var ENDPOINT = "__RECAPTURE_ENDPOINT__";
  // null: use the shop of the storefront (init.data.shop.myshopifyDomain).
  var SHOP = "__RECAPTURE_SHOP__";
  var MAX_BATCH = 20;            // envelopes per request
  var MAX_BATCH_BYTES = 60000;   // keepalive requests are capped at 64 KB by browsers
  var FLUSH_DELAY_MS = 250;      // gathers bursts (page_viewed + product_viewed) into one request
  var COOKIES = ["__kla_id"];

  var shop = SHOP || (init && init.data && init.data.shop && init.data.shop.myshopifyDomain) || null;
  var customer = (init && init.data && init.data.customer) || null;
  var consent = (init && init.customerPrivacy) || null;
  var queue = [];
  var timer = null;

  function readCookies() {
    var reads = COOKIES.map(function (name) {
      return Promise.resolve(browser.cookie.get(name)).then(
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
    var body = JSON.stringify(batch.length === 1 ? batch[0] : { batch: batch });
    // text/plain keeps this a simple CORS request: no preflight, which keepalive requests handle badly.
    return fetch(ENDPOINT, {
      method: "POST",
      body: body,
      keepalive: true,
      headers: { "content-type": "text/plain;charset=UTF-8" },
    }).catch(function () { /* the next event retries nothing: Shopify's webhooks cover checkout and orders */ });
  }

  function flush() {
    timer = null;
    while (queue.length) {
      var batch = [];
      var size = 0;
      while (queue.length && batch.length < MAX_BATCH) {
        var next = JSON.stringify(queue[0]).length;
        if (batch.length && size + next > MAX_BATCH_BYTES) { break; }
        batch.push(queue.shift());
        size += next;
      }
      send(batch);
    }
  }

  function enqueue(event) {
    readCookies().then(function (cookies) {
      queue.push({ shop: shop, event: event, customer: customer, consent: consent, cookies: cookies });
      // The purchase must not wait: the thank-you page may be closed at once.
      if (event.name === "checkout_completed" || queue.length >= MAX_BATCH) { flush(); }
      else if (!timer) { timer = setTimeout(flush, FLUSH_DELAY_MS); }
    });
  }

  analytics.subscribe("all_standard_events", enqueue);

  var privacy = (typeof customerPrivacy !== "undefined" && customerPrivacy) ||
    (typeof api !== "undefined" && api && api.customerPrivacy) || null;
  if (privacy && typeof privacy.subscribe === "function") {
    privacy.subscribe("visitorConsentCollected", function (payload) {
      consent = (payload && payload.customerPrivacy) || payload || consent;
    });
  }
})();
