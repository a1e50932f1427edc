// Tessera's only script: "Copy codes" on the backup-code page. Everything else works without it.
(function () {
  var button = document.getElementById("copy-codes");
  if (!button || !navigator.clipboard) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var status = document.getElementById("copy-status");
    navigator.clipboard.writeText(button.getAttribute("data-codes").split(" ").join("\n")).then(function () {
      if (status) { status.textContent = "Copied."; }
    }, function () {
      if (status) { status.textContent = "Copying failed: select the codes and copy them."; }
    });
  });
})();
