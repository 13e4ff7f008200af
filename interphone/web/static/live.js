"use strict";
// A panel kept up to date by a Server-Sent Events feed: the panel is fetched again on
// every change and on every (re)connection ("hello"). One fetch at a time; a change that
// arrives meanwhile asks for one more, so responses never overtake each other and the
// last change is always shown.
function livePanel(panel, panelUrl, feedUrl, onRender) {
  let running = false, again = false;
  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      do {
        again = false;
        const r = await fetch(panelUrl, {credentials: "same-origin"});
        if (r.ok) {
          panel.innerHTML = await r.text();
          if (onRender) onRender(panel);
        }
      } while (again);
    } finally { running = false; }
  }
  const feed = new EventSource(feedUrl);
  feed.addEventListener("hello", refresh);
  feed.addEventListener("change", refresh);
  return refresh;
}
