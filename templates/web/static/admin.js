// The admin's live preview: a moment after the editor stops typing, the draft's subject,
// preheader and note are posted (CSRF token included, nothing saved) to the preview
// endpoint, once into each preview frame: phone, desktop and the text part.
(function () {
  "use strict";
  var form = document.getElementById("edit-form");
  if (!form) {
    return;
  }
  var url = form.getAttribute("data-preview");
  var frames = [["phone", url], ["desktop", url], ["text", url + "?format=text"]];
  var timer = null;

  function refresh() {
    var action = form.getAttribute("action");
    frames.forEach(function (frame) {
      form.setAttribute("target", frame[0]);
      form.setAttribute("action", frame[1]);
      form.submit();
    });
    form.setAttribute("action", action);
    form.removeAttribute("target");
  }

  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 600);
  });
})();
