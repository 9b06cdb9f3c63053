// Progressive: the page reads without this; it adds the source panels, the
// findings' filters and the copy buttons.
(function () {
  "use strict";
  var node = document.getElementById("tc-data");
  if (!node) return;
  var data = JSON.parse(node.textContent);
  var views = data.views || {};
  var picked = {};
  filters();

  function prefix(view) {
    return view === "shown" ? "" : view + "-";
  }

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  // Schedules: a step's details and source in its schedule's panel.
  function show(view, index) {
    var schedule = views[view];
    var panel = document.getElementById(prefix(view) + "source");
    var step = schedule && schedule.steps[String(index)];
    if (!step || !panel) return;
    panel.textContent = "";
    panel.appendChild(text("h2", "Step " + index + " · " + schedule.lanes[step.t]));
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
    if (picked[view]) picked[view].classList.remove("picked");
    picked[view] = document.querySelector(
      'rect[data-view="' + view + '"][data-step="' + index + '"]');
    if (picked[view]) picked[view].classList.add("picked");
  }

  document.querySelectorAll("a[data-step]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var view = link.getAttribute("data-view");
      var index = link.getAttribute("data-step");
      show(view, index);
      history.replaceState(null, "", "#" + prefix(view) + "step-" + index);
    });
  });

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

  var hash = /^#(?:(\w+)-)?step-(\d+)$/.exec(location.hash);
  Object.keys(views).forEach(function (view) {
    var wanted = hash && (hash[1] || "shown") === view;
    show(view, wanted ? hash[2] : views[view].first);
  });
})();
