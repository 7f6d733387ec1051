// recapture dashboard: panels refresh in place, retry buttons post with fetch. Without this script every page
// still works (forms post and redirect back); with it nothing reloads the whole page.
(() => {
  "use strict";

  const FRAGMENT = { "X-Dashboard-Fragment": "1" };

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function signInAgain() {
    window.location.assign("/dashboard/login?next=" + encodeURIComponent(location.pathname + location.search));
  }

  function swap(panel, html) {
    const body = panel.querySelector("[data-body]");
    if (body) {
      body.innerHTML = html;
      panel.dataset.updated = String(Date.now());
    }
  }

  async function refresh(panel) {
    // A panel being acted on (a retry posting) is left alone until the action answers.
    if (!panel || panel.dataset.busy) { return; }
    panel.dataset.busy = "1";
    try {
      const response = await fetch(panel.dataset.refresh, {
        headers: FRAGMENT, credentials: "same-origin", cache: "no-store",
      });
      if (response.status === 401) { signInAgain(); return; }
      if (response.ok) { swap(panel, await response.text()); }
    } catch (error) {
      // Offline or restarting: the next tick tries again.
    } finally {
      delete panel.dataset.busy;
    }
  }

  function poll(panel) {
    const seconds = Number(panel.dataset.every || "0");
    if (seconds > 0) {
      window.setInterval(() => {
        // A panel an action just redrew keeps its notice for at least half an interval.
        const fresh = Date.now() - Number(panel.dataset.updated || "0") < seconds * 500;
        if (!document.hidden && !fresh) { refresh(panel); }
      }, seconds * 1000);
    }
  }

  async function submitInPlace(form, panel) {
    const buttons = form.querySelectorAll("button");
    buttons.forEach((button) => { button.disabled = true; });
    panel.dataset.busy = "1";
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { ...FRAGMENT, "X-CSRF-Token": csrfToken() },
        credentials: "same-origin",
      });
      if (response.status === 401) { signInAgain(); return; }
      swap(panel, await response.text());
    } catch (error) {
      buttons.forEach((button) => { button.disabled = false; });
      return;
    } finally {
      delete panel.dataset.busy;
    }
    refresh(document.getElementById("deliveries"));
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    const panel = form instanceof HTMLFormElement && form.matches("form[data-async]")
      ? form.closest("[data-refresh]") : null;
    if (!panel) { return; }
    event.preventDefault();
    submitInPlace(form, panel);
  });

  document.addEventListener("change", (event) => {
    const select = event.target;
    if (select instanceof HTMLSelectElement && select.matches("[data-autosubmit]") && select.form) {
      select.form.requestSubmit();
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { document.querySelectorAll("[data-refresh]").forEach(refresh); }
  });

  document.querySelectorAll("[data-refresh]").forEach(poll);
})();
