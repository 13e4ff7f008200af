"use strict";
// A panel kept up to date by a Server-Sent Events feed: the panel is fetched again on
// every change and on every (re)connection ("hello"). One fetch at a time; a change that
// arrives meanwhile asks for one more, so responses never overtake each other and the
// last change is always shown.
//
// Re-rendering must not get in the way of the person using the screen: what they are
// typing or choosing (fields with an id, in a form with the same action: the note of
// one call never lands in the next) and where the keyboard focus is are carried over
// to the new panel, so a queue change never wipes a note half written nor sends a
// keyboard user back to the top of the page.
function livePanel(panel, panelUrl, feedUrl, onRender) {
  let running = false, again = false;

  const keyOf = el => (el.form ? el.form.getAttribute("action") : "") + "#" + el.id;

  function keep() {
    const fields = {};
    for (const el of panel.querySelectorAll("input[id], select[id], textarea[id]")) {
      if (el.type === "hidden") continue;
      fields[keyOf(el)] = el.value;
    }
    const active = document.activeElement;
    const focused = active && panel.contains(active) && active.id ? active.id : null;
    const selection = focused && typeof active.selectionStart === "number"
      ? [active.selectionStart, active.selectionEnd] : null;
    return {fields, focused, selection};
  }

  function restore(kept) {
    for (const el of panel.querySelectorAll("input[id], select[id], textarea[id]")) {
      const value = kept.fields[keyOf(el)];
      if (value !== undefined && el.type !== "hidden" && el.value !== value) el.value = value;
    }
    if (kept.focused) {
      const el = document.getElementById(kept.focused);
      if (el && panel.contains(el)) {
        el.focus({preventScroll: true});
        if (kept.selection && typeof el.setSelectionRange === "function") {
          try { el.setSelectionRange(kept.selection[0], kept.selection[1]); } catch (e) { /* not a text field */ }
        }
      }
    }
  }

  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      do {
        again = false;
        const r = await fetch(panelUrl, {credentials: "same-origin"});
        if (r.ok) {
          const html = await r.text();
          const kept = keep();
          panel.innerHTML = html;
          restore(kept);
          if (onRender) onRender(panel);
        }
      } while (again);
    } finally { running = false; }
  }
  const feed = new EventSource(feedUrl);
  feed.addEventListener("hello", refresh);
  feed.addEventListener("change", refresh);
  // a newer screen of the same person took this one's feed: said, and no reconnection
  feed.addEventListener("replaced", (event) => {
    feed.close();
    const note = document.createElement("p");
    note.setAttribute("role", "status");
    note.className = "feed-replaced";
    note.textContent = JSON.parse(event.data).message;
    panel.before(note);
  });
  return refresh;
}
