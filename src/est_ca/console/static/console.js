// est-ca console: progressive enhancement only; every page works without it.
"use strict";

function enhance(root) {
  for (const button of root.querySelectorAll("[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = button.dataset.copied;
    });
  }
  for (const button of root.querySelectorAll("[data-print]")) {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  }
  // A large upload shows its progress: the form is sent by XHR, and the page it leads to
  // (the result, or the same form with every row's error) replaces the main content.
  for (const form of root.querySelectorAll("form[data-progress]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const bar = document.getElementById(form.dataset.progress);
      const text = form.querySelector("[data-progress-text]");
      bar.closest(".progress").hidden = false;
      const request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.upload.addEventListener("progress", (progress) => {
        if (!progress.lengthComputable) return;
        bar.value = Math.round((100 * progress.loaded) / progress.total);
        text.textContent = bar.value + " %";
        document.body.dataset.uploaded = bar.value;
      });
      request.addEventListener("load", () => {
        const page = new DOMParser().parseFromString(request.responseText, "text/html");
        const main = page.querySelector("main");
        if (!main) { document.location.reload(); return; }
        document.querySelector("main").replaceWith(main);
        document.title = page.title;
        if (request.responseURL) history.replaceState(null, "", request.responseURL);
        enhance(main);
      });
      request.send(new FormData(form));
    });
  }
}

document.addEventListener("DOMContentLoaded", () => enhance(document));
