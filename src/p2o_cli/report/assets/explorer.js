/* p2o report: the GEPA explorer. Reads the JSON in #explorer-data (written by p2o's
   report/explorer.py) and draws, per run and per epoch that ran GEPA, the template lineage,
   each template's text and problems, the refused children, and the rollout samples.
   Plain DOM and SVG, no libraries; every text from the run goes in through textContent. */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var OUTCOMES = {
    kept: "kept: beat its parent on the minibatch",
    not_better: "refused: did not beat its parent on the minibatch",
    duplicate: "refused: repeats an existing template",
    leaks_answer: "refused: contains a gold answer of its minibatch",
    unusable: "refused: empty or too long"
  };
  var REFUSED_FILL = { not_better: "#aeb5bd", duplicate: "#d9dde2", leaks_answer: "#CC79A7", unusable: "#444" };
  var ROW = 30, PAD = 18, INDENT = 26, SQUARE = 11, PER_LINE = 24;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "onclick") node.addEventListener("click", attrs[key]);
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  function preview(text, n) {
    var flat = (text || "").replace(/\s+/g, " ").trim();
    if (!flat) return "(empty: the plain prompt)";
    return flat.length > n ? flat.slice(0, n - 1) + "…" : flat;
  }

  // Light to dark blue with the dev score (0 to 1): readable in grey and for colour-blind readers.
  function scoreColour(x) {
    var a = [232, 241, 250], b = [8, 69, 148], t = Math.max(0, Math.min(1, x || 0));
    return "rgb(" + a.map(function (v, i) { return Math.round(v + (b[i] - v) * t); }).join(",") + ")";
  }

  function devText(t, epoch) {
    return t.dev_solved.length + "/" + epoch.dev_ids.length + " dev";
  }

  function problemList(run, ids, title, open) {
    var items = ids.map(function (pid) {
      var p = run.problems[pid];
      return el("li", {}, [
        el("code", { text: pid }),
        el("span", { text: p ? " " + preview(p.problem, 240) + "  (answer: " + p.answer + ")" : "" })
      ]);
    });
    var details = el("details", open ? { open: "" } : {}, [
      el("summary", { text: title + " (" + ids.length + ")" }),
      ids.length ? el("ol", { class: "problems" }, items) : el("div", { class: "empty", text: "none" })
    ]);
    return details;
  }

  function row(label, value) {
    return [el("dt", { text: label }), el("dd", {}, [typeof value === "string" ? document.createTextNode(value) : value])];
  }

  function definitionList(rows) {
    var dl = el("dl");
    rows.forEach(function (pair) { pair.forEach(function (node) { dl.appendChild(node); }); });
    return dl;
  }

  /* ------------------------------------------------------------ one epoch's search */

  function EpochView(run, epoch) {
    this.run = run;
    this.epoch = epoch;
    this.byId = {};
    var self = this;
    epoch.templates.forEach(function (t) { self.byId[t.id] = t; });
    this.showRefused = epoch.proposals.length <= 400;
    this.root = el("div", { class: "epoch-view", "data-epoch": String(epoch.epoch) });
    this.detail = el("div", { class: "detail" });
    this.graph = el("div", { class: "graph" });
    this.build();
  }

  EpochView.prototype.build = function () {
    var e = this.epoch, self = this, c = e.counters || {};
    var refused = e.proposals.filter(function (p) { return p.outcome !== "kept"; });
    var front = e.templates.filter(function (t) { return t.front; }).length;
    var parts = ["GEPA on " + e.hard + " hard problems (" + e.dev_ids.length + " dev, " + e.train_ids.length +
      " hard-train): " + e.iterations + " iterations, " + e.spent + " of " + e.budget + " rollouts spent; " +
      e.templates.length + " templates (seed included), " + front + " on the Pareto front"];
    if (e.proposals_recorded) {
      parts.push(e.proposals.length + " children proposed, " + refused.length + " refused (" +
        ["not_better", "duplicate", "leaks_answer", "unusable"].map(function (o) {
          return refused.filter(function (p) { return p.outcome === o; }).length + " " + o.replace("_", " ");
        }).join(", ") + ")");
    } else {
      parts.push("refused children were not recorded by the p2o that ran this search (" +
        (c.reflections || 0) + " proposals)");
    }
    this.root.appendChild(el("p", { class: "summary", text: parts.join("; ") + "." }));
    this.root.appendChild(this.key());
    if (refused.length) {
      var box = el("input", { type: "checkbox" });
      box.checked = this.showRefused;
      box.addEventListener("change", function () { self.showRefused = box.checked; self.drawGraph(); });
      this.root.appendChild(el("label", { class: "key" }, [box, document.createTextNode(" show refused children")]));
    }
    this.root.appendChild(el("div", { class: "lineage-wrap" }, [this.graph, this.detail]));
    this.root.appendChild(el("h4", { text: "Templates" }));
    this.root.appendChild(this.templateTable());
    if (refused.length) {
      this.root.appendChild(el("details", {}, [el("summary", { text: "Refused children (" + refused.length + ")" }),
        this.proposalTable(refused)]));
    }
    this.drawGraph();
    this.select("t:" + (e.templates.slice().sort(function (a, b) { return b.dev_mean - a.dev_mean; })[0] || {}).id);
  };

  EpochView.prototype.key = function () {
    function swatch(shape) {
      var s = svgEl("svg", { width: 16, height: 16 });
      s.appendChild(shape);
      return s;
    }
    return el("div", { class: "key" }, [
      el("span", {}, [swatch(svgEl("circle", { cx: 8, cy: 8, r: 6, fill: scoreColour(0.1), stroke: "#555" })),
        document.createTextNode("kept template, darker = higher dev score")]),
      el("span", {}, [swatch(svgEl("circle", { cx: 8, cy: 8, r: 6, fill: scoreColour(0.5), stroke: "#D55E00", "stroke-width": 3 })),
        document.createTextNode("on the Pareto front")]),
      el("span", {}, [swatch(svgEl("rect", { x: 3, y: 3, width: 10, height: 10, fill: REFUSED_FILL.not_better })),
        document.createTextNode("refused child (pink: leaked an answer)")]),
      el("span", { text: "indented under its parent; it = the GEPA iteration that made it" })
    ]);
  };

  // Kept templates in tree order (a parent before its children), each with its depth.
  EpochView.prototype.treeOrder = function () {
    var e = this.epoch, kids = {}, ids = {}, out = [];
    e.templates.forEach(function (t) { ids[t.id] = true; });
    e.templates.forEach(function (t) {
      var parent = t.parent && ids[t.parent] ? t.parent : "";
      (kids[parent] = kids[parent] || []).push(t);
    });
    (function walk(parent, depth) {
      (kids[parent] || []).forEach(function (t) { out.push({ t: t, depth: depth }); walk(t.id, depth + 1); });
    })("", 0);
    return out;
  };

  /* The lineage as an indented tree: one row per kept template (indented under its parent,
     joined to it by an elbow), its refused children as small squares under its row. */
  EpochView.prototype.drawGraph = function () {
    var self = this, e = this.epoch, rows = this.treeOrder(), pos = {}, y = PAD;
    var refusedOf = {};
    if (this.showRefused) {
      e.proposals.forEach(function (p, i) {
        if (p.outcome !== "kept") (refusedOf[p.parent] = refusedOf[p.parent] || []).push(i);
      });
    }
    var layout = rows.map(function (row) {
      var x = PAD + row.depth * INDENT, item = { row: row, x: x, y: y, refused: refusedOf[row.t.id] || [] };
      pos[row.t.id] = item;
      y += ROW + Math.ceil(item.refused.length / PER_LINE) * SQUARE;
      return item;
    });
    var width = Math.max(560, PAD * 2 + (maxDepth(rows) + 1) * INDENT + 420);
    var svg = svgEl("svg", { width: width, height: y + PAD / 2, role: "img",
      "aria-label": "template lineage, epoch " + e.epoch });
    layout.forEach(function (item) {
      var parent = pos[item.row.t.parent];
      if (parent) {
        svg.appendChild(svgEl("path", { class: "edge",
          d: "M" + parent.x + "," + (parent.y + 9) + " V" + item.y + " H" + (item.x - 9) }));
      }
    });
    layout.forEach(function (item) { self.drawTemplate(svg, item); });
    this.graph.textContent = "";
    this.graph.appendChild(svg);
    if (this.selected) this.highlight(this.selected);
  };

  function maxDepth(rows) {
    return rows.reduce(function (m, r) { return Math.max(m, r.depth); }, 0);
  }

  EpochView.prototype.drawTemplate = function (svg, item) {
    var self = this, t = item.row.t, e = this.epoch;
    var g = svgEl("g", { class: "node", "data-key": "t:" + t.id, transform: "translate(" + item.x + "," + item.y + ")" });
    g.appendChild(svgEl("circle", { r: 8, fill: scoreColour(t.dev_mean), stroke: t.front ? "#D55E00" : "#555",
      "stroke-width": t.front ? 3 : 1 }));
    var label = svgEl("text", { x: 14, y: 4 });
    label.textContent = t.id + "  ·  " + devText(t, e) + "  ·  it " + t.iteration + "  ·  " + preview(t.text, 60);
    g.appendChild(label);
    var title = svgEl("title", {});
    title.textContent = t.id + ": " + devText(t, e) + " — " + preview(t.text, 200);
    g.appendChild(title);
    g.addEventListener("click", function () { self.select("t:" + t.id); });
    svg.appendChild(g);
    item.refused.forEach(function (index, n) {
      var p = e.proposals[index];
      var sx = item.x + INDENT + (n % PER_LINE) * SQUARE, sy = item.y + ROW - 8 + Math.floor(n / PER_LINE) * SQUARE;
      var q = svgEl("g", { class: "node refused", "data-key": "p:" + index, transform: "translate(" + sx + "," + sy + ")" });
      q.appendChild(svgEl("rect", { x: -4, y: -4, width: 8, height: 8, fill: REFUSED_FILL[p.outcome] || "#aaa" }));
      var tip = svgEl("title", {});
      tip.textContent = "iteration " + p.iteration + ", " + OUTCOMES[p.outcome] + " — " + preview(p.text, 120);
      q.appendChild(tip);
      q.addEventListener("click", function () { self.select("p:" + index); });
      svg.appendChild(q);
    });
  };

  EpochView.prototype.highlight = function (key) {
    Array.prototype.forEach.call(this.graph.querySelectorAll(".node"), function (g) {
      g.classList.toggle("selected", g.getAttribute("data-key") === key);
    });
  };

  EpochView.prototype.select = function (key) {
    this.selected = key;
    this.highlight(key);
    this.detail.textContent = "";
    if (key.indexOf("t:") === 0 && this.byId[key.slice(2)]) this.templateDetail(this.byId[key.slice(2)]);
    else if (key.indexOf("p:") === 0) this.proposalDetail(this.epoch.proposals[Number(key.slice(2))]);
  };

  EpochView.prototype.parentLink = function (id) {
    var self = this;
    if (!id) return document.createTextNode("none (the seed)");
    return el("span", { class: "linkish", text: id, onclick: function () { self.select("t:" + id); } });
  };

  EpochView.prototype.templateDetail = function (t) {
    var e = this.epoch, self = this, run = this.run;
    var heading = el("h4", { text: "Template " + t.id });
    heading.appendChild(el("span", { class: "badge kept", text: "kept" }));
    if (t.front) heading.appendChild(el("span", { class: "badge front", text: "Pareto front" }));
    var origin = e.proposals.filter(function (p) { return p.id === t.id; })[0];
    var children = e.proposals.filter(function (p) { return p.parent === t.id; });
    var rows = [row("parent", this.parentLink(t.parent)), row("iteration", String(t.iteration)),
      row("dev score", t.dev_solved.length + " of " + e.dev_ids.length + " (" + t.dev_mean.toFixed(3) + ")"),
      row("assigned to", t.assigned.length + " hard problems for the next epoch")];
    if (origin) rows.push(row("minibatch", "parent " + origin.parent_score + " → child " + origin.child_score +
      " of " + origin.minibatch.length));
    if (children.length) {
      rows.push(row("children", children.filter(function (p) { return p.outcome === "kept"; }).length + " kept of " +
        children.length + " proposed"));
    }
    [heading, definitionList(rows), el("pre", { class: "template-text", text: t.text || "(empty: the plain prompt)" }),
      problemList(run, t.dev_solved, "Dev problems it solves", false),
      problemList(run, t.train_solved, "Hard-train problems it solved in minibatches", false),
      problemList(run, t.assigned, "Hard problems the set cover assigned it to", false)
    ].forEach(function (node) { self.detail.appendChild(node); });
  };

  EpochView.prototype.proposalDetail = function (p) {
    var heading = el("h4", { text: "Refused child of " + p.parent });
    heading.appendChild(el("span", { class: "badge refused", text: p.outcome.replace("_", " ") }));
    var scores = p.child_score === null ? "not evaluated" : "parent " + p.parent_score + " → child " + p.child_score +
      " of " + p.minibatch.length;
    this.detail.appendChild(heading);
    this.detail.appendChild(definitionList([row("parent", this.parentLink(p.parent)),
      row("iteration", String(p.iteration)), row("outcome", OUTCOMES[p.outcome] || p.outcome),
      row("minibatch", scores)]));
    this.detail.appendChild(el("pre", { text: p.text || "(empty)" }));
    this.detail.appendChild(problemList(this.run, p.minibatch, "Its minibatch", true));
  };

  EpochView.prototype.templateTable = function () {
    var self = this, e = this.epoch;
    var body = el("tbody", {}, e.templates.map(function (t) {
      return el("tr", { class: "template-row", "data-id": t.id, onclick: function () { self.select("t:" + t.id); } }, [
        el("td", {}, [el("span", { class: "linkish", text: t.id })]), el("td", { text: t.parent || "–" }),
        el("td", { text: String(t.iteration) }), el("td", { text: devText(t, e) }),
        el("td", { text: t.front ? "yes" : "" }), el("td", { text: String(t.assigned.length) }),
        el("td", { text: preview(t.text, 110) })
      ]);
    }));
    var head = el("thead", {}, [el("tr", {}, ["id", "parent", "iteration", "dev solved", "front", "assigned",
      "text"].map(function (h) { return el("th", { text: h }); }))]);
    return el("div", { class: "table" }, [el("table", { class: "templates" }, [head, body])]);
  };

  EpochView.prototype.proposalTable = function (refused) {
    var self = this, e = this.epoch;
    var body = el("tbody", {}, refused.map(function (p) {
      var index = e.proposals.indexOf(p);
      return el("tr", { class: "proposal-row", onclick: function () { self.select("p:" + index); } }, [
        el("td", { text: String(p.iteration) }), el("td", { text: p.parent }),
        el("td", { text: p.outcome.replace("_", " ") }),
        el("td", { text: p.child_score === null ? "–" : p.parent_score + " → " + p.child_score }),
        el("td", { text: preview(p.text, 110) })
      ]);
    }));
    var head = el("thead", {}, [el("tr", {}, ["iteration", "parent", "outcome", "minibatch (parent → child)",
      "text"].map(function (h) { return el("th", { text: h }); }))]);
    return el("div", { class: "table" }, [el("table", {}, [head, body])]);
  };

  /* ------------------------------------------------------------ rollout samples */

  function rolloutBox(r, templates) {
    var meta = (r.reward > 0 ? "✓ correct" : "✗ wrong") + " · k=" + r.k + " · answer " + (r.pred === null ? "none" : r.pred) +
      " · " + r.n_tokens + " tokens" + (r.finish_reason === "length" ? " (cut at the limit)" : "");
    var metaNode = el("div", { class: "meta", text: meta });
    if (r.template_id) {
      metaNode.appendChild(document.createTextNode(" · template "));
      metaNode.appendChild(el("code", { text: r.template_id, title: (templates || {})[r.template_id] || "" }));
    }
    return el("div", { class: "rollout" + (r.reward > 0 ? " correct" : "") }, [metaNode, el("pre", { text: r.response })]);
  }

  function column(title, rollouts, templates) {
    var solved = rollouts.filter(function (r) { return r.reward > 0; }).length;
    return el("div", { class: "col" }, [el("h5", { text: title + (rollouts.length ? ": " + solved + " of " + rollouts.length + " correct" : "") })]
      .concat(rollouts.length ? rollouts.map(function (r) { return rolloutBox(r, templates); })
        : [el("div", { class: "empty", text: "none this epoch" })]));
  }

  function samplesView(run) {
    var s = run.samples, wrap = el("div", { class: "samples" });
    if (!s.problems.length) return wrap;
    var first = s.epochs[0], last = s.epochs[s.epochs.length - 1];
    wrap.appendChild(el("h3", { text: "Rollouts of " + s.problems.length + " hard problems of epoch " + first }));
    wrap.appendChild(el("p", { class: "lead", text: "A sample of the problems that were hard at epoch " + first +
      " and got templates: their rollouts there (all plain), at the first epoch with templates, and at the last " +
      "epoch, where the plain prompt shows what context distillation carried over. Hover a template id for its text." }));
    s.problems.forEach(function (item, index) {
      var p = run.problems[item.id] || { problem: "", answer: "" };
      // One line per problem when closed: how many rollouts were correct at each epoch shown.
      var tally = s.epochs.map(function (epoch) {
        var rs = item.rollouts[String(epoch)] || [];
        return "epoch " + epoch + ": " + rs.filter(function (r) { return r.reward > 0; }).length + "/" + rs.length;
      }).join(" · ");
      var box = el("details", index < 3 ? { class: "problem", "data-id": item.id, open: "" }
        : { class: "problem", "data-id": item.id }, [
        el("summary", {}, [el("code", { text: item.id }),
          document.createTextNode("  gold answer " + p.answer + "  —  correct " + tally)]),
        el("pre", { text: p.problem })
      ]);
      s.epochs.forEach(function (epoch) {
        var rollouts = item.rollouts[String(epoch)] || [], templates = s.templates[String(epoch)];
        var what = epoch === first ? "hard here" : epoch === last ? "last epoch" : "first with templates";
        box.appendChild(el("div", { class: "epoch-row" }, [
          el("div", {}, [el("strong", { text: "epoch " + epoch }), el("div", { class: "empty", text: what })]),
          column("plain", rollouts.filter(function (r) { return !r.template_id; }), templates),
          column("templated", rollouts.filter(function (r) { return r.template_id; }), templates)
        ]));
      });
      wrap.appendChild(box);
    });
    return wrap;
  }

  /* ------------------------------------------------------------ runs and epochs */

  function runView(run) {
    var view = el("div", { class: "run-view", "data-run": run.name });
    var tabs = el("div", { class: "tabs" }), panes = [];
    run.epochs.forEach(function (epoch, i) {
      var pane = new EpochView(run, epoch).root;
      pane.hidden = i !== 0;
      panes.push(pane);
      var button = el("button", { type: "button", class: i === 0 ? "active" : "", text: "epoch " + epoch.epoch,
        onclick: function () {
          panes.forEach(function (p, j) { p.hidden = j !== i; });
          Array.prototype.forEach.call(tabs.children, function (b, j) { b.classList.toggle("active", j === i); });
        } });
      tabs.appendChild(button);
    });
    view.appendChild(el("div", { class: "controls" }, [el("span", { text: "GEPA at the end of" }), tabs]));
    panes.forEach(function (p) { view.appendChild(p); });
    view.appendChild(samplesView(run));
    return view;
  }

  function main() {
    var root = document.getElementById("explorer-root");
    var runs = JSON.parse(document.getElementById("explorer-data").textContent);
    var views = runs.map(runView);
    if (runs.length > 1) {
      var select = el("select", { "aria-label": "run" }, runs.map(function (r, i) {
        return el("option", { value: String(i), text: r.label });
      }));
      select.addEventListener("change", function () {
        views.forEach(function (v, i) { v.hidden = String(i) !== select.value; });
      });
      root.appendChild(el("div", { class: "controls" }, [el("span", { text: "run" }), select]));
    }
    views.forEach(function (v, i) { v.hidden = i !== 0; root.appendChild(v); });
    root.setAttribute("data-ready", "true");
  }

  main();
})();
