"use strict";
// The admin's prompt page (templates/admin_prompt.html): "Listen" reads the text being
// edited aloud with the browser's voice, in the prompt's language (its catalogue's
// say_language, as Twilio's <Say> would), its placeholders filled with examples.
(function () {
  const button = document.getElementById("preview");
  const field = document.getElementById("text");
  const status = document.getElementById("preview-status");
  if (!button || !field) return;
  const examples = JSON.parse(button.dataset.examples || "{}");
  button.addEventListener("click", () => {
    const text = field.value.replace(/\{(\w+)\}/g, (_, name) => examples[name] || name);
    if (!window.speechSynthesis || typeof SpeechSynthesisUtterance === "undefined") {
      if (status) status.textContent = button.dataset.unavailable || "";
      return;
    }
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = button.dataset.sayLanguage || "fr-FR";
    window.speechSynthesis.cancel();
    window.speechSynthesis.speak(utterance);
    if (status) status.textContent = text;
  });
})();
