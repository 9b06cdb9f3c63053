// Progressive: the page reads without this; it adds the source panel and copy buttons.
(function () {
  "use strict";
  var node = document.getElementById("tc-data");
  if (!node) return;
  var data = JSON.parse(node.textContent);
  filters();
  var steps = data.steps || {};
  var panel = document.getElementById("source");
  var picked = null;

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  function show(index) {
    var step = steps[String(index)];
    if (!step || !panel) return;
    panel.textContent = "";
    panel.appendChild(text("h2", "Step " + index + " · " + data.lanes[step.t]));
    panel.appendChild(text("div", step.d, "mono"));
    panel.appendChild(text("div", step.w, "mono"));
    if (step.n) panel.appendChild(text("div", step.n, "note"));
    panel.appendChild(text("div", "virtual time " + step.v, "sub"));
    var lines = data.sources[step.s] || [];
    var pre = document.createElement("pre");
    pre.className = "src";
    lines.forEach(function (line) {
      var row = text("span", String(line[0]).padStart(5) + "  " + line[1] + "\n");
      if (line[0] === step.l) row.className = "here";
      pre.appendChild(row);
    });
    if (!lines.length) pre.textContent = "(source not available)";
    panel.appendChild(pre);
    if (picked) picked.classList.remove("picked");
    picked = document.querySelector('rect[data-step="' + index + '"]');
    if (picked) picked.classList.add("picked");
  }

  document.querySelectorAll("a[data-step]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var index = link.getAttribute("data-step");
      show(index);
      history.replaceState(null, "", "#step-" + index);
    });
  });

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      var value = target ? target.textContent : "";
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(value).then(done, function () { select(target); });
      } else {
        select(target);
      }
    });
  });

  function select(target) {
    if (!target) return;
    var range = document.createRange();
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Findings: filter the cards (and one-line rows) by kind and by test.
  function filters() {
    var bar = document.getElementById("filters");
    if (!bar) return;
    bar.hidden = false;
    var select = document.getElementById("test-filter");
    function apply() {
      var kinds = {};
      bar.querySelectorAll("input.kind-filter").forEach(function (box) {
        kinds[box.value] = box.checked;
      });
      var test = select ? select.value : "";
      document.querySelectorAll("[data-kind]").forEach(function (card) {
        var shown = kinds[card.getAttribute("data-kind")] !== false &&
          (!test || card.getAttribute("data-test") === test);
        card.hidden = !shown;
      });
    }
    bar.addEventListener("change", apply);
    apply();
  }

  var hash = /^#step-(\d+)$/.exec(location.hash);
  if (data.steps) show(hash ? hash[1] : data.first);
})();
