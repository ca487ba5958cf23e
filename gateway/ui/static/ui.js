// Copy buttons for the commands on a file's page. Without script the commands are still there
// to select; the buttons stay hidden.
"use strict";
(function () {
  const status = document.getElementById("copy-status");

  function fallbackCopy(text) {
    // navigator.clipboard needs a secure context (HTTPS or localhost).
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) { return; }
    const label = button.firstChild.nodeValue;
    button.hidden = false;
    button.addEventListener("click", function () {
      copy(source.textContent).then(function () {
        button.firstChild.nodeValue = "Copied";
        if (status) { status.textContent = "Copied to the clipboard."; }
      }, function () {
        button.firstChild.nodeValue = "Select and copy";
        if (status) { status.textContent = "Could not copy: select the text and copy it."; }
      });
      setTimeout(function () { button.firstChild.nodeValue = label; }, 2000);
    });
  });
})();
