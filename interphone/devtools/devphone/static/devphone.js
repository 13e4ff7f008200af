"use strict";
// The dev phone's page (templates/devphone.html): its phones talking to /dev/phone/api.
const voices = {};
function speak(text, lang) {
  if (!window.speechSynthesis) return;
  const u = new SpeechSynthesisUtterance(text);
  u.lang = lang || "fr-FR";
  window.speechSynthesis.speak(u);
}
for (const box of document.querySelectorAll("[data-phone]")) {
  const number = () => box.querySelector("[data-number]").value.trim();
  let heardCount = 0;
  const keypad = box.querySelector(".keypad");
  if (keypad) {
    for (const key of "123456789*0#") {
      const b = document.createElement("button");
      b.textContent = key;
      b.setAttribute("aria-label", "Touche " + key);
      b.addEventListener("click", () => act("key", key));
      keypad.appendChild(b);
    }
  }
  let shown = {number: "", revision: -1};  // the newest view shown: older answers are dropped
  function render(view) {
    if (view.number === shown.number && view.revision < shown.revision) return;
    shown = {number: view.number, revision: view.revision};
    const call = view.call;
    box.querySelector("[data-status]").textContent =
      !call ? "Pas d'appel" : call.conference ? "En communication" :
      call.status === "in-progress" ? (call.listening ? "En ligne — à vous de parler" : call.waiting_for_keys ? "En ligne — à vous de taper" + (call.typed ? " : " + call.typed : "") : "En ligne") :
      "Terminé (" + call.status + ")";
    const hears = box.querySelector("[data-hears]");  // who this handset hears, in a conference
    hears.hidden = !call || !call.hears;
    hears.textContent = call && call.hears ?
      "entend : " + (call.hears.length ? call.hears.join(", ") : "personne (musique d'attente)") : "";
    const ringing = box.querySelector("[data-ringing]");  // the door never rings
    if (ringing) ringing.hidden = view.ringing.length === 0;
    const log = box.querySelector("[data-log]");
    if (call) {
      if (call.heard.length < heardCount) heardCount = 0;
      for (const said of call.heard.slice(heardCount)) {
        const p = document.createElement("p");
        p.textContent = "🔊 " + said.text;
        p.lang = (said.lang || "fr").slice(0, 2);
        log.appendChild(p);
        speak(said.text, said.lang);
      }
      heardCount = call.heard.length;
      log.scrollTop = log.scrollHeight;
    }
    const sms = box.querySelector("[data-sms]");
    if (sms) {
      sms.replaceChildren(...view.messages.map(m => { const li = document.createElement("li"); li.textContent = m; return li; }));
    }
  }
  // one action at a time, in the order pressed: two fetches in flight may reach the
  // server in either order, and a file number's keys would arrive shuffled
  let queue = Promise.resolve();
  function act(action, keys, text) {
    queue = queue.then(() => send(action, keys, text), () => send(action, keys, text));
    return queue;
  }
  async function send(action, keys, text) {
    if (action === "ring" || action === "answer") { heardCount = 0; box.querySelector("[data-log]").replaceChildren(); }
    const r = await fetch("/dev/phone/api/act", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({number: number(), action, keys, text})});
    const body = await r.json();
    if (r.ok) render(body); else box.querySelector("[data-status]").textContent = body.error;
  }
  for (const b of box.querySelectorAll("[data-act]")) b.addEventListener("click", () => act(b.dataset.act));
  const say = box.querySelector("[data-say]");
  if (say) say.addEventListener("submit", event => {
    event.preventDefault();
    const field = say.querySelector("input");
    const p = document.createElement("p");
    p.textContent = "🗣 " + field.value;
    box.querySelector("[data-log]").appendChild(p);
    act("say", "", field.value);
    field.value = "";
  });
  async function spoken(label, request) {
    const p = document.createElement("p");
    p.textContent = "🎙 " + label;
    box.querySelector("[data-log]").appendChild(p);
    const r = await request;
    const body = await r.json();
    if (r.ok) render(body); else box.querySelector("[data-status]").textContent = body.error;
  }
  const voice = box.querySelector("[data-voice]");
  if (voice) voice.addEventListener("submit", event => {
    event.preventDefault();
    const field = voice.querySelector("input");
    spoken(field.value, fetch("/dev/phone/api/voice", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({number: number(), text: field.value})}));
    field.value = "";
  });
  const wav = box.querySelector("[data-wav]");
  if (wav) wav.addEventListener("submit", event => {
    event.preventDefault();
    const file = wav.querySelector("input").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("number", number());
    form.append("audio", file);
    spoken(file.name, fetch("/dev/phone/api/audio", {method: "POST", body: form}));
  });
  async function poll() {
    try {
      const r = await fetch("/dev/phone/api/state", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({number: number()})});
      if (r.ok) render(await r.json());
    } finally { setTimeout(poll, 1000); }
  }
  poll();
}
