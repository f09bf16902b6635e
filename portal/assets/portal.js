// The sfop developer portal's only script of its own, served from the
// portal's origin (content-security-policy: script-src 'self'; nothing
// inline). Pages work without it; it adds:
// - copy buttons: <button data-copy="ID"> copies the text of element ID;
// - version selectors: <select data-autosubmit> submits its form on change.
(function () {
  "use strict";

  function done(button, ok) {
    button.setAttribute("data-copied", ok ? "yes" : "no");
    button.textContent = ok ? "Copied" : "Select the text to copy";
  }

  // Without the asynchronous clipboard (not a secure context, or refused).
  function copyBySelection(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.top = "0";
    area.style.left = "0";
    area.style.width = "1px";
    area.style.height = "1px";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) {
      return;
    }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) {
      return;
    }
    var text = source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { done(button, true); },
        function () { done(button, copyBySelection(text)); }
      );
    } else {
      done(button, copyBySelection(text));
    }
  });

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-autosubmit]") && select.form) {
      select.form.submit();
    }
  });
})();
