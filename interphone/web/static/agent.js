"use strict";
// The agent's screen (templates/agent.html): the live panel and the offer's countdown.
(function () {
  const panel = document.getElementById("panel");
  let offset = 0;  // server clock minus browser clock, from the last panel
  function tick() {
    for (const el of panel.querySelectorAll("[data-deadline]")) {
      const left = Math.max(0, Math.round((Number(el.dataset.deadline) - (Date.now() + offset)) / 1000));
      el.textContent = String(left);
    }
  }
  livePanel(panel, "/agent/panel", "/agent/feed", function () {
    const first = panel.querySelector("[data-now]");
    if (first) offset = Number(first.dataset.now) - Date.now();
    tick();
  });
  setInterval(tick, 1000);
})();
