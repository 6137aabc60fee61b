/* lingcollapse report: sortable/filterable tables, point tooltips and highlighting,
   the token explorer, training curves and the layer view. Plain JavaScript, no
   dependencies: the page must open offline as one file. Data comes from the
   <script type="application/json"> elements that report.py writes. */
(function () {
  'use strict';

  var tip = document.getElementById('lc-tip');
  var PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
    '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  var SVGNS = 'http://www.w3.org/2000/svg';

  // ---------------------------------------------------------------- helpers
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function readJSON(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    if (!node._lcData) node._lcData = JSON.parse(node.textContent);
    return node._lcData;
  }
  // Numbers as the Python side prints them: integers with thousands separators,
  // other values to 4 significant digits, tiny ones in exponent form.
  function fmt(x) {
    if (x === null || x === undefined || (typeof x === 'number' && !isFinite(x))) return '–';
    if (typeof x !== 'number') return String(x);
    if (Number.isInteger(x) && Math.abs(x) < 1e15) return x.toLocaleString('en-US');
    if (x !== 0 && Math.abs(x) < 1e-4) return x.toExponential(3);
    return String(Number(x.toPrecision(4)));
  }
  // A token's text quoted, its whitespace made visible (a leading space matters).
  function tokenText(t) {
    if (t === null || t === undefined) return '–';
    return "'" + String(t).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t')
      .replace(/\r/g, '\\r') + "'";
  }
  function cssString(s) { return '"' + String(s).replace(/["\\]/g, '\\$&') + '"'; }

  // ---------------------------------------------------------------- tables
  // Sort key of a cell: data-v when the page gives one, else its text as a number
  // when it reads as one (1,234 / −0.5 / 1.2e-05), else the lower-cased text; blanks
  // ("–") are null and always sort last.
  function cellKey(td) {
    if (!td) return null;
    var v = td.getAttribute('data-v');
    if (v !== null) return Number(v);
    var t = td.textContent.trim().replace(/\u2212/g, '-');
    if (t === '' || t === '–' || t === '-') return null;
    var n = Number(t.replace(/,/g, ''));
    return isNaN(n) ? t.toLowerCase() : n;
  }
  function compareKeys(a, b) {
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);
    var na = typeof a === 'number', nb = typeof b === 'number';
    if (na !== nb) return na ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  function sortTable(table, column, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) {
      return { row: row, key: cellKey(row.cells[column]), i: i };
    });
    keyed.sort(function (p, q) {
      // blanks last in both directions; ties keep their order
      if (p.key === null || q.key === null) return compareKeys(p.key, q.key) || p.i - q.i;
      var c = compareKeys(p.key, q.key);
      return (descending ? -c : c) || p.i - q.i;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (i === column) th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    });
  }
  function filterTable(table, query, counter) {
    var terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0, rows = table.tBodies[0].rows;
    Array.prototype.forEach.call(rows, function (row) {
      var text = row.textContent.toLowerCase();
      var keep = terms.every(function (t) { return text.indexOf(t) >= 0; });
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    if (counter) counter.textContent = shown + ' of ' + rows.length + ' rows';
  }
  // Click a header to sort (again to reverse); a search box above filters the rows.
  function enhanceTable(table, options) {
    if (table._lcEnhanced || !table.tHead || !table.tBodies.length) return;
    table._lcEnhanced = true;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      var what = th.getAttribute('data-title');
      th.title = (what ? what + ' — ' : '') + 'click to sort (again to reverse)';
      th.addEventListener('click', function () {
        sortTable(table, i, th.getAttribute('aria-sort') === 'ascending');
      });
    });
    if (options && options.filter === false) return;
    var box = el('input', { type: 'search', placeholder: 'Filter rows…', 'aria-label': 'Filter rows' });
    var counter = el('span', { 'class': 'count' });
    var tools = el('div', { 'class': 'lc-tools' });
    tools.appendChild(box);
    tools.appendChild(counter);
    var anchor = table.parentElement.classList.contains('scroll') ? table.parentElement : table;
    anchor.parentElement.insertBefore(tools, anchor);
    box.addEventListener('input', function () { filterTable(table, box.value, counter); });
    filterTable(table, '', counter);
  }

  // ---------------------------------------------------------------- tooltip, highlight
  function showTip(html, event) {
    tip.innerHTML = html;
    tip.hidden = false;
    moveTip(event);
  }
  function moveTip(event) {
    if (tip.hidden) return;
    var x = event.clientX + 14, y = event.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = event.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = event.clientY - h - 14;
    tip.style.left = Math.max(4, x) + 'px';
    tip.style.top = Math.max(4, y) + 'px';
  }
  function hideTip() { tip.hidden = true; }
  function escapeHTML(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  // Mark every point and table row of one model (or unmark them).
  function highlight(model, on) {
    if (model === null || model === undefined || model === '') return;
    var nodes = document.querySelectorAll('[data-model=' + cssString(model) + ']');
    Array.prototype.forEach.call(nodes, function (n) { n.classList.toggle('lc-hl', on); });
  }
  function pointTip(point) {
    var model = point.getAttribute('data-model');
    var group = point.closest('g[data-xlabel]');
    var lines = ['<b>' + escapeHTML(model) + '</b>'];
    if (group && point.hasAttribute('data-x')) {
      lines.push('<span class="k">' + escapeHTML(group.getAttribute('data-ylabel')) + ':</span> ' +
        fmt(Number(point.getAttribute('data-y'))));
      lines.push('<span class="k">' + escapeHTML(group.getAttribute('data-xlabel')) + ':</span> ' +
        fmt(Number(point.getAttribute('data-x'))));
    }
    return lines[0] + lines.slice(1).join('<br>');  // the name is a block of its own
  }
  function setupHover() {
    document.addEventListener('mouseover', function (event) {
      var point = event.target.closest && event.target.closest('svg.fig [data-model]');
      if (point) {
        // the styled tooltip replaces the browser's own (the <title>) while hovered
        var title = point.querySelector('title');
        if (title) { point._lcTitle = title; title.remove(); }
        highlight(point.getAttribute('data-model'), true);
        showTip(pointTip(point), event);
        return;
      }
      var row = event.target.closest && event.target.closest('table.results tbody tr[data-model]');
      if (row) highlight(row.getAttribute('data-model'), true);
    });
    document.addEventListener('mouseout', function (event) {
      var node = event.target.closest && event.target.closest('[data-model]');
      if (!node) return;
      var into = event.relatedTarget;
      if (into && node.contains(into)) return;
      if (node._lcTitle) { node.appendChild(node._lcTitle); node._lcTitle = null; }
      highlight(node.getAttribute('data-model'), false);
      if (node.closest('svg.fig')) hideTip();
    });
    document.addEventListener('mousemove', moveTip);
  }

  // ---------------------------------------------------------------- line charts
  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { var pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
    var err = (hi - lo) / count / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var ticks = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
    return { lo: lo, hi: hi, ticks: ticks };
  }
  function logTicks(lo, hi) {
    var ticks = [];
    for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      [1, 2, 5].forEach(function (m) {
        var t = m * Math.pow(10, e);
        if (t >= lo && t <= hi) ticks.push(t);
      });
    }
    if (ticks.length < 2) ticks = [lo, hi];
    return ticks;
  }
  // series: [{name, color, points: [[x, y], …], hidden}]; returns an <svg>. Hovering
  // names the nearest point's series and value and thickens its line.
  function lineChart(opts) {
    var W = opts.width || 560, H = opts.height || 320;
    var m = { l: 62, r: 14, t: 26, b: 40 };
    var svg = svgEl('svg', { 'class': 'lc-chart', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H });
    var all = [];
    opts.series.forEach(function (s) {
      if (s.hidden) return;
      s.points.forEach(function (p) {
        if (p[0] !== null && p[1] !== null && isFinite(p[0]) && isFinite(p[1]) &&
            (!opts.logY || p[1] > 0)) all.push(p);
      });
    });
    var title = svgEl('text', { x: m.l, y: 16, 'class': 'title' });
    title.textContent = opts.title || '';
    svg.appendChild(title);
    if (!all.length) {
      var none = svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' });
      none.textContent = 'no points to draw';
      svg.appendChild(none);
      return svg;
    }
    var xs = all.map(function (p) { return p[0]; }), ys = all.map(function (p) { return p[1]; });
    var xr = niceTicks(Math.min.apply(null, xs), Math.max.apply(null, xs), 6);
    var ylo = Math.min.apply(null, ys), yhi = Math.max.apply(null, ys);
    var yt, fy;
    if (opts.logY) {
      if (!(yhi > ylo)) { ylo /= 2; yhi *= 2; }
      var a = Math.log10(ylo), b = Math.log10(yhi);
      yt = logTicks(ylo, yhi);
      if (yt.length > 8) yt = yt.filter(function (t) { return Math.abs(Math.log10(t) % 1) < 1e-9; });
      fy = function (y) { return H - m.b - (Math.log10(y) - a) / (b - a) * (H - m.t - m.b); };
    } else {
      var yr = niceTicks(ylo, yhi, 5);
      ylo = yr.lo; yhi = yr.hi; yt = yr.ticks;
      fy = function (y) { return H - m.b - (y - ylo) / (yhi - ylo) * (H - m.t - m.b); };
    }
    var x0 = Math.min(xr.lo, xr.ticks[0]), x1 = Math.max(xr.hi, xr.ticks[xr.ticks.length - 1]);
    var fx = function (x) { return m.l + (x - x0) / ((x1 - x0) || 1) * (W - m.l - m.r); };
    yt.forEach(function (t) {
      var y = fy(t);
      if (y < m.t - 1 || y > H - m.b + 1) return;
      svg.appendChild(svgEl('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, 'class': 'grid' }));
      var label = svgEl('text', { x: m.l - 6, y: y + 4, 'text-anchor': 'end' });
      label.textContent = fmt(t);
      svg.appendChild(label);
    });
    xr.ticks.forEach(function (t) {
      var x = fx(t);
      svg.appendChild(svgEl('line', { x1: x, x2: x, y1: H - m.b, y2: H - m.b + 4, 'class': 'axis' }));
      var label = svgEl('text', { x: x, y: H - m.b + 16, 'text-anchor': 'middle' });
      label.textContent = fmt(t);
      svg.appendChild(label);
    });
    svg.appendChild(svgEl('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, 'class': 'axis' }));
    svg.appendChild(svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, 'class': 'axis' }));
    var xl = svgEl('text', { x: (m.l + W - m.r) / 2, y: H - 6, 'text-anchor': 'middle' });
    xl.textContent = opts.xLabel || '';
    svg.appendChild(xl);
    var yl = svgEl('text', { x: 12, y: (m.t + H - m.b) / 2, 'text-anchor': 'middle',
      transform: 'rotate(-90 12 ' + (m.t + H - m.b) / 2 + ')' });
    yl.textContent = (opts.yLabel || '') + (opts.logY ? ' (log)' : '');
    svg.appendChild(yl);
    var drawn = [];
    opts.series.forEach(function (s) {
      if (s.hidden) return;
      var pts = s.points.filter(function (p) {
        return p[0] !== null && p[1] !== null && isFinite(p[0]) && isFinite(p[1]) &&
          (!opts.logY || p[1] > 0);
      }).sort(function (p, q) { return p[0] - q[0]; });
      if (!pts.length) return;
      var d = pts.map(function (p, i) { return (i ? 'L' : 'M') + fx(p[0]).toFixed(1) + ' ' + fy(p[1]).toFixed(1); });
      var path = svgEl('path', { d: d.join(''), 'class': 'line', stroke: s.color });
      svg.appendChild(path);
      if (opts.dots || pts.length === 1) {
        pts.forEach(function (p) {
          svg.appendChild(svgEl('circle', { cx: fx(p[0]), cy: fy(p[1]), r: 3, fill: s.color, 'class': 'dot' }));
        });
      }
      pts.forEach(function (p) { drawn.push({ s: s, p: p, x: fx(p[0]), y: fy(p[1]), path: path }); });
    });
    var marker = svgEl('circle', { r: 4.5, fill: 'none', stroke: '#1d2330', 'stroke-width': 1.5, visibility: 'hidden' });
    svg.appendChild(marker);
    var current = null;
    svg.addEventListener('mousemove', function (event) {
      var box = svg.getBoundingClientRect();
      var sx = (event.clientX - box.left) * W / box.width, sy = (event.clientY - box.top) * H / box.height;
      var best = null, bestD = 400;  // within 20 units
      drawn.forEach(function (d) {
        var dd = (d.x - sx) * (d.x - sx) + (d.y - sy) * (d.y - sy);
        if (dd < bestD) { bestD = dd; best = d; }
      });
      if (current && (!best || best.path !== current.path)) current.path.classList.remove('lc-hl');
      current = best;
      if (!best) { marker.setAttribute('visibility', 'hidden'); hideTip(); return; }
      best.path.classList.add('lc-hl');
      marker.setAttribute('cx', best.x); marker.setAttribute('cy', best.y);
      marker.setAttribute('visibility', 'visible');
      showTip('<b>' + escapeHTML(best.s.name) + '</b><span class="k">' + escapeHTML(opts.xLabel) +
        ':</span> ' + fmt(best.p[0]) + '<br><span class="k">' + escapeHTML(opts.yLabel) + ':</span> ' +
        fmt(best.p[1]), event);
    });
    svg.addEventListener('mouseleave', function () {
      if (current) current.path.classList.remove('lc-hl');
      current = null;
      marker.setAttribute('visibility', 'hidden');
      hideTip();
    });
    return svg;
  }
  // A histogram from bin edges and counts (numpy.histogram's, embedded by the page):
  // one bar per bin, a log x axis when asked, hover names a bin's range and count, and
  // opts.mark ({value, label}) draws a line at one class's value.
  function histChart(opts) {
    var W = opts.width || 1200, H = opts.height || 330;
    var m = { l: 62, r: 16, t: 42, b: 40 };  // the top margin holds the marked token's name
    var svg = svgEl('svg', { 'class': 'lc-chart lc-hist', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H });
    var title = svgEl('text', { x: m.l, y: 16, 'class': 'title' });
    title.textContent = opts.title || '';
    svg.appendChild(title);
    var e = opts.edges, n = opts.counts, lo = e[0], hi = e[e.length - 1];
    var a = opts.logX ? Math.log10(lo) : lo, b = opts.logX ? Math.log10(hi) : hi;
    var fx = function (x) {
      var t = opts.logX ? Math.log10(x) : x;
      return m.l + (t - a) / ((b - a) || 1) * (W - m.l - m.r);
    };
    var top = Math.max.apply(null, n.concat([1]));
    var fy = function (y) { return H - m.b - y / top * (H - m.t - m.b); };
    niceTicks(0, top, 5).ticks.filter(function (t) { return Number.isInteger(t) && t <= top; })
      .forEach(function (t) {
        var y = fy(t);
        svg.appendChild(svgEl('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, 'class': 'grid' }));
        var label = svgEl('text', { x: m.l - 6, y: y + 4, 'text-anchor': 'end' });
        label.textContent = fmt(t);
        svg.appendChild(label);
      });
    var xt;
    if (opts.logX) {
      xt = logTicks(lo, hi);
      if (xt.length > 8) xt = xt.filter(function (t) { return Math.abs(Math.log10(t) % 1) < 1e-9; });
    } else {
      xt = niceTicks(lo, hi, 6).ticks;
    }
    xt.filter(function (t) { return t >= lo && t <= hi; }).forEach(function (t) {
      var x = fx(t);
      svg.appendChild(svgEl('line', { x1: x, x2: x, y1: H - m.b, y2: H - m.b + 4, 'class': 'axis' }));
      var label = svgEl('text', { x: x, y: H - m.b + 16, 'text-anchor': 'middle' });
      label.textContent = fmt(t);
      svg.appendChild(label);
    });
    n.forEach(function (count, i) {
      var x0 = fx(e[i]), x1 = fx(e[i + 1]);
      var range = '[' + fmt(e[i]) + ', ' + fmt(e[i + 1]) + (i === n.length - 1 ? ']' : ')');
      var bar = svgEl('rect', { x: x0 + 0.5, width: Math.max(x1 - x0 - 1, 0.5), y: fy(count),
        height: H - m.b - fy(count), 'class': 'bar', 'data-count': count });
      var hit = svgEl('rect', { x: x0, width: Math.max(x1 - x0, 0.5), y: m.t, height: H - m.t - m.b,
        'class': 'hit', 'data-range': range, 'data-count': count });
      hit.addEventListener('mouseover', function (event) {
        bar.classList.add('lc-hl');
        showTip('<b>' + escapeHTML(opts.xLabel) + ' in ' + range + '</b>' + fmt(count) +
          ' class' + (count === 1 ? '' : 'es'), event);
      });
      hit.addEventListener('mouseout', function () { bar.classList.remove('lc-hl'); hideTip(); });
      svg.appendChild(bar);
      svg.appendChild(hit);
    });
    svg.appendChild(svgEl('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, 'class': 'axis' }));
    svg.appendChild(svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, 'class': 'axis' }));
    var xl = svgEl('text', { x: (m.l + W - m.r) / 2, y: H - 6, 'text-anchor': 'middle' });
    xl.textContent = opts.xLabel + (opts.logX ? ' (log)' : '');
    svg.appendChild(xl);
    var yl = svgEl('text', { x: 12, y: (m.t + H - m.b) / 2, 'text-anchor': 'middle',
      transform: 'rotate(-90 12 ' + (m.t + H - m.b) / 2 + ')' });
    yl.textContent = 'classes';
    svg.appendChild(yl);
    var mark = opts.mark;
    if (mark && typeof mark.value === 'number' && isFinite(mark.value)) {
      var note = svgEl('text', { y: m.t - 8, 'class': 'lc-mark-label' });
      if (opts.logX && !(mark.value > 0)) {
        note.setAttribute('x', W - m.r);
        note.setAttribute('text-anchor', 'end');
        note.textContent = mark.label + ' = ' + fmt(mark.value) + ': not on the log axis';
      } else {
        var x = Math.min(Math.max(fx(mark.value), m.l), W - m.r);
        svg.appendChild(svgEl('line', { x1: x, x2: x, y1: m.t - 4, y2: H - m.b, 'class': 'lc-mark',
          'data-value': mark.value }));
        var right = x > (m.l + W - m.r) / 2;
        note.setAttribute('x', right ? x - 6 : x + 6);
        note.setAttribute('text-anchor', right ? 'end' : 'start');
        note.textContent = mark.label + ' = ' + fmt(mark.value);
      }
      svg.appendChild(note);
    }
    return svg;
  }
  // A clickable key: clicking a name hides or shows its series.
  function chartKey(series, redraw) {
    var key = el('div', { 'class': 'key' });
    series.forEach(function (s) {
      var item = el('span', { title: 'Click to hide or show' });
      var swatch = el('i');
      swatch.style.background = s.color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      if (s.hidden) item.classList.add('off');
      item.addEventListener('click', function () {
        s.hidden = !s.hidden;
        item.classList.toggle('off', s.hidden);
        redraw();
      });
      key.appendChild(item);
    });
    return key;
  }
  function labelled(text, control) {
    var label = el('label', {}, text + ' ');
    label.appendChild(control);
    return label;
  }
  function selectOf(options, id) {
    var select = el('select', id ? { id: id } : {});
    options.forEach(function (o) {
      var opt = el('option', { value: o[0] }, o[1]);
      select.appendChild(opt);
    });
    return select;
  }

  // ---------------------------------------------------------------- training curves
  function setupCurves() {
    var box = document.getElementById('lc-curves');
    var data = readJSON('lc-curves-data');
    if (!box || !data) return;
    var xSel = selectOf([['epoch', 'epoch'], ['step', 'optimizer step']], 'lc-curve-x');
    var logBox = el('input', { type: 'checkbox', id: 'lc-curve-log' });
    var controls = el('div', { 'class': 'controls' });
    controls.appendChild(labelled('x axis', xSel));
    controls.appendChild(labelled('log loss axis', logBox));
    var charts = el('div', { 'class': 'charts' });
    var series = data.map(function (run, i) {
      return { name: run.run, color: PALETTE[i % PALETTE.length], run: run, hidden: false };
    });
    function points(rows, column) {
      return rows.map(function (r) { return [r[column], r[2]]; });
    }
    function redraw() {
      var column = xSel.value === 'step' ? 0 : 1;
      var xLabel = xSel.value === 'step' ? 'step' : 'epoch';
      charts.innerHTML = '';
      [['train', 'training loss', false], ['eval', 'validation loss', true]].forEach(function (kind) {
        var lines = series.map(function (s) {
          return { name: s.name, color: s.color, hidden: s.hidden, points: points(s.run[kind[0]], column) };
        });
        charts.appendChild(lineChart({ title: kind[1], xLabel: xLabel, yLabel: kind[1],
          series: lines, logY: logBox.checked, dots: kind[2] }));
      });
    }
    xSel.addEventListener('change', redraw);
    logBox.addEventListener('change', redraw);
    box.appendChild(controls);
    box.appendChild(chartKey(series, redraw));
    box.appendChild(charts);
    var runs = el('p', { 'class': 'muted' }, data.length + ' run(s); models: ' + data.map(function (r) {
      return r.run + (r.models.length ? ' → ' + r.models.join(', ') : '');
    }).join(' · '));
    box.appendChild(runs);
    redraw();
  }

  // ---------------------------------------------------------------- layer view
  function setupLayers() {
    var box = document.getElementById('lc-layers');
    var data = readJSON('lc-layers-data');
    if (!box || !data) return;
    var col = {};
    data.columns.forEach(function (c, i) { col[c] = i; });
    var metricSel = selectOf(data.metrics.map(function (m) {
      return [m.name, m.name + ' ' + m.arrow + (m.what ? ' — ' + m.what : '')];
    }), 'lc-layer-metric');
    var logBox = el('input', { type: 'checkbox', id: 'lc-layer-log' });
    var controls = el('div', { 'class': 'controls' });
    controls.appendChild(labelled('property', metricSel));
    controls.appendChild(labelled('log axis', logBox));
    var chart = el('div', { 'class': 'charts' });
    var models = [];
    data.rows.forEach(function (r) { if (models.indexOf(r[col.model]) < 0) models.push(r[col.model]); });
    var series = models.map(function (name, i) {
      return { name: String(name), color: PALETTE[i % PALETTE.length], hidden: false };
    });
    function redraw() {
      var metric = metricSel.value;
      series.forEach(function (s) {
        s.points = data.rows.filter(function (r) { return String(r[col.model]) === s.name; })
          .map(function (r) { return [r[col.layer_index], r[col[metric]]]; });
      });
      chart.innerHTML = '';
      chart.appendChild(lineChart({ title: metric + ' against depth', xLabel: 'layer', yLabel: metric,
        series: series, logY: logBox.checked, dots: true, width: 760, height: 360 }));
    }
    metricSel.addEventListener('change', redraw);
    logBox.addEventListener('change', redraw);
    box.appendChild(controls);
    box.appendChild(chartKey(series, redraw));
    box.appendChild(chart);
    // the table of every model's layers
    var table = el('table', { 'class': 'lc-sort', id: 'lc-layer-table' });
    var head = el('thead'), hr = el('tr');
    data.columns.forEach(function (c) { hr.appendChild(el('th', c === 'model' || c === 'layer' ? { 'class': 'l' } : {}, c)); });
    head.appendChild(hr);
    table.appendChild(head);
    var body = el('tbody');
    data.rows.forEach(function (r) {
      var tr = el('tr', { 'data-model': String(r[col.model]) });
      r.forEach(function (v, i) {
        var c = data.columns[i];
        tr.appendChild(el('td', c === 'model' || c === 'layer' ? { 'class': 'l' } : (typeof v === 'number' ? { 'data-v': v } : {}), fmt(v)));
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    var scroll = el('div', { 'class': 'scroll' });
    scroll.appendChild(table);
    box.appendChild(scroll);
    enhanceTable(table);
    redraw();
  }

  // ---------------------------------------------------------------- token explorer
  // Short headers; the full meaning in the header's tooltip.
  var LABELS = {
    token_id: ['id', 'token id'], token: ['token', 'decoded token text'],
    count: ['count', 'train samples of the class'], sigma2: ['σ²', 'within-class variance σ_c²'],
    log_norm: ['log norm', 'log ‖μ_c − μ̄‖ (equinormness, Eq. 5)'],
    norm_scaled: ['scaled norm', "‖μ_c − μ̄‖² / √d (Table 4's scaled norm)"],
    cdnv_mean: ['CDNV', 'row mean of the pair CDNV over c′ ≠ c (Eq. 4)'],
    interference_mean: ['interf.', 'row mean of cos(μ_c − μ̄, μ_c′ − μ̄) (Eq. 6)'],
    logkernel_mean: ['log kernel', 'row mean of the log inverse-distance kernel (Eq. 7)'],
    duality_cos: ['duality cos', 'cos(w_c, μ_c − μ̄) (self-duality, Eq. 8)'],
    dot: ['⟨w, μ−μ̄⟩', '⟨w_c, μ_c − μ̄⟩'], val_count: ['val count', 'validation samples of the class'],
    agreement_rate: ['NC4 agree', 'share of its validation samples where the linear and the ' +
      'nearest-class-centre classifier agree (Eq. 10)']
  };
  function label(c) { return LABELS[c] ? LABELS[c][0] : c; }
  function meaning(c) { return LABELS[c] ? LABELS[c][1] : c; }

  function tokenRowCells(tr, values, columns) {
    columns.forEach(function (c, i) {
      var v = values[i];
      if (c === 'token') {
        var td = el('td', { 'class': 'l' });
        td.appendChild(el('span', { 'class': 'tok' }, tokenText(v)));
        tr.appendChild(td);
      } else {
        tr.appendChild(el('td', typeof v === 'number' ? { 'data-v': v } : {}, fmt(v)));
      }
    });
  }
  function tokenTable(columns, rows, id) {
    var table = el('table', { 'class': 'lc-sort', id: id });
    var head = el('thead'), hr = el('tr');
    columns.forEach(function (c) {
      var th = el('th', c === 'token' ? { 'class': 'l' } : {}, label(c));
      hr.appendChild(th);
      th.setAttribute('data-title', meaning(c));
    });
    head.appendChild(hr);
    table.appendChild(head);
    var body = el('tbody');
    rows.forEach(function (r) {
      var tr = el('tr', r.attrs || {});
      tokenRowCells(tr, r.values, columns);
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }
  function scrolled(table) {
    var wrap = el('div', { 'class': 'scroll' });
    wrap.style.maxHeight = '360px';
    wrap.appendChild(table);
    return wrap;
  }

  function setupExplorer() {
    var box = document.getElementById('lc-explorer');
    var index = readJSON('lc-token-index');
    if (!box || !index) return;
    var modelSel = selectOf(index.map(function (m, i) { return [String(i), m.model]; }), 'lc-tok-model');
    var layerSel = el('select', { id: 'lc-tok-layer' });
    var layerLabel = labelled('layer', layerSel);
    var query = el('input', { type: 'search', id: 'lc-tok-q', placeholder: "a token, e.g. ' the' or the",
      'aria-label': 'token to search' });
    var mode = selectOf([['substring', 'contains'], ['exact', 'is (up to a leading space)'], ['prefix', 'starts with']], 'lc-tok-mode');
    var caseBox = el('input', { type: 'checkbox', id: 'lc-tok-case' });
    var controls = el('div', { 'class': 'controls lc-explorer' });
    controls.appendChild(labelled('model', modelSel));
    controls.appendChild(layerLabel);
    controls.appendChild(labelled('token', query));
    controls.appendChild(mode);
    controls.appendChild(labelled('match case', caseBox));
    var info = el('p', { 'class': 'muted', id: 'lc-tok-info' });
    var matches = el('div', { id: 'lc-tok-matches-box' });
    var detail = el('div', { id: 'lc-tok-detail', 'class': 'lc-explorer' });
    box.appendChild(controls);
    box.appendChild(info);
    box.appendChild(matches);
    box.appendChild(detail);
    // the histogram of a column over all classes
    var hists = el('div', { 'class': 'lc-explorer', id: 'lc-hist' });
    box.appendChild(hists);
    // Tables 4–5
    var views = el('div', { 'class': 'lc-explorer', id: 'lc-t45' });
    box.appendChild(views);

    var view = null, selected = -1;
    function layersOf(entry) {
      return entry.layers || [{ layer: null, id: entry.id, full: true }];
    }
    function layerName(layer) {
      if (layer === null || layer === undefined) return 'last (input of the output layer)';
      return 'layer ' + layer + (layer === 0 ? ' (token embeddings)' : ' (block ' + layer + ')');
    }
    function fillLayers() {
      var layers = layersOf(index[Number(modelSel.value)]);
      layerSel.innerHTML = '';
      layers.forEach(function (l, i) {
        layerSel.appendChild(el('option', { value: String(i) }, layerName(l.layer) +
          (l.full ? '' : ' — histograms only')));
      });
      layerSel.value = String(layers.length - 1);  // the last layer
      layerLabel.hidden = layers.length < 2;
    }
    function load() {
      var entry = index[Number(modelSel.value)];
      view = readJSON(layersOf(entry)[Number(layerSel.value)].id);
      var where = view.model + ' (run ' + view.run + ')' +
        (view.layer === null || view.layer === undefined ? '' : ', ' + layerName(view.layer));
      [matches, detail, views].forEach(function (part) { part.hidden = !!view.histOnly; });
      query.disabled = !!view.histOnly;
      if (view.histOnly) {
        info.textContent = where + ': ' + view.total.toLocaleString('en-US') + ' classes; only ' +
          'the histograms of this inner layer are in this page (see the rule above).';
        return;
      }
      view.col = {};
      view.columns.forEach(function (c, i) { view.col[c] = i; });
      view.size = view.data[view.columns[0]].length;
      info.textContent = where + ': ' + view.size.toLocaleString('en-US') +
        ' of ' + view.total.toLocaleString('en-US') + ' classes embedded (the most frequent)' +
        (view.note ? '; ' + view.note : '') + '.';
    }
    function rowValues(i) {
      return view.columns.map(function (c) { return view.data[c][i]; });
    }
    // Rows whose token matches the query: exact matches first, then by count.
    function search() {
      var q = query.value, sensitive = caseBox.checked, how = mode.value;
      var tokens = view.data.token || [];
      var ids = view.data.token_id || [];
      if (!q) return Array.from({ length: Math.min(view.size, 20) }, function (_, i) { return i; });
      var norm = function (s) { return sensitive ? s : s.toLowerCase(); };
      var nq = norm(q), bare = nq.replace(/^[ \u0120\u2581]+/, '');
      var hits = [], exact = [];
      for (var i = 0; i < view.size; i++) {
        var t = tokens[i] === null || tokens[i] === undefined ? '' : norm(String(tokens[i]));
        var stripped = t.replace(/^[ \u0120\u2581]+/, '');
        var isExact = t === nq || (stripped === bare && bare !== '') || String(ids[i]) === q.trim();
        var hit = isExact || (how === 'substring' && t.indexOf(nq) >= 0) ||
          (how === 'prefix' && (t.indexOf(nq) === 0 || stripped.indexOf(bare) === 0));
        if (isExact) exact.push(i); else if (hit) hits.push(i);
      }
      return exact.concat(hits);
    }
    function showMatches() {
      var found = search();
      matches.innerHTML = '';
      if (!found.length) {
        matches.appendChild(el('p', { 'class': 'muted', id: 'lc-tok-none' },
          'No embedded token matches ' + tokenText(query.value) + ' (only the ' +
          view.size.toLocaleString('en-US') + ' most frequent classes are in this page; ' +
          '`lingcollapse inspect` searches them all).'));
        detail.innerHTML = '';
        selected = -1;
        drawHist();
        return;
      }
      var shown = found.slice(0, 100);
      var caption = query.value ? found.length + ' match(es)' + (found.length > 100 ? ', first 100 shown' : '') +
        '; click a row for its neighbours.' : 'The 20 most frequent classes; click a row for its neighbours.';
      matches.appendChild(el('p', { 'class': 'sub' }, caption));
      var table = tokenTable(view.columns, shown.map(function (i) {
        return { values: rowValues(i), attrs: { 'class': 'pick', 'data-row': String(i) } };
      }), 'lc-tok-matches');
      table.addEventListener('click', function (event) {
        var tr = event.target.closest('tr.pick');
        if (tr) choose(Number(tr.getAttribute('data-row')));
      });
      matches.appendChild(scrolled(table));
      enhanceTable(table, { filter: false });
      choose(shown[0]);
    }
    function neighbourTable(kind, valueName, id) {
      var rows = (view[kind] || [])[selected] || [];
      var values = (view[kind + '_value'] || [])[selected] || [];
      var table = el('table', { 'class': 'lc-sort', id: id });
      var head = el('thead'), hr = el('tr');
      ['#', 'token', 'token id', valueName, 'count'].forEach(function (h, i) {
        hr.appendChild(el('th', i === 1 ? { 'class': 'l' } : {}, h));
      });
      head.appendChild(hr);
      table.appendChild(head);
      var body = el('tbody');
      rows.forEach(function (j, r) {
        if (j < 0) return;
        var tr = el('tr', { 'class': 'pick', 'data-row': String(j) });
        tr.appendChild(el('td', {}, String(r + 1)));
        var td = el('td', { 'class': 'l' });
        td.appendChild(el('span', { 'class': 'tok' }, tokenText(view.data.token ? view.data.token[j] : null)));
        tr.appendChild(td);
        tr.appendChild(el('td', { 'data-id': view.data.token_id[j] }, fmt(view.data.token_id[j])));
        tr.appendChild(el('td', { 'data-v': values[r] }, fmt(values[r])));
        tr.appendChild(el('td', {}, fmt(view.data.count ? view.data.count[j] : null)));
        body.appendChild(tr);
      });
      table.appendChild(body);
      table.addEventListener('click', function (event) {
        var tr = event.target.closest('tr.pick');
        if (!tr) return;
        var j = Number(tr.getAttribute('data-row'));
        query.value = view.data.token ? String(view.data.token[j]) : String(view.data.token_id[j]);
        mode.value = 'exact';
        showMatches();
        choose(j);
      });
      enhanceTable(table, { filter: false });
      return table;
    }
    function choose(i) {
      selected = i;
      Array.prototype.forEach.call(matches.querySelectorAll('tr.pick'), function (tr) {
        tr.classList.toggle('sel', Number(tr.getAttribute('data-row')) === i);
      });
      detail.innerHTML = '';
      var heading = el('h3', { id: 'lc-tok-heading' });
      heading.appendChild(document.createTextNode('Token '));
      heading.appendChild(el('span', { 'class': 'tok' }, tokenText(view.data.token ? view.data.token[i] : null)));
      heading.appendChild(document.createTextNode(' (id ' + view.data.token_id[i] + ') in ' + view.model +
        (view.layer === null || view.layer === undefined ? '' : ', ' + layerName(view.layer))));
      detail.appendChild(heading);
      var grid = el('div', { 'class': 'lc-detail' });
      var facts = el('table', { 'class': 'facts', id: 'lc-tok-facts' });
      var body = el('tbody');
      view.columns.forEach(function (c) {
        if (c === 'token') return;
        var tr = el('tr', { 'data-column': c });
        if (view.hist && view.hist[c]) {
          tr.classList.add('pick');
          tr.title = 'Click to draw its histogram over all classes';
          tr.addEventListener('click', function () { setHistColumn(c); });
        }
        var name = el('td');
        name.appendChild(el('b', {}, label(c)));
        if (meaning(c) !== label(c)) name.appendChild(el('span', { 'class': 'muted' }, ' — ' + meaning(c)));
        tr.appendChild(name);
        tr.appendChild(el('td', {}, fmt(view.data[c][i])));
        body.appendChild(tr);
      });
      facts.appendChild(body);
      var left = el('div');
      left.appendChild(el('h3', {}, 'Its values'));
      left.appendChild(facts);
      grid.appendChild(left);
      var right = el('div');
      if (view.nearest) {
        right.appendChild(el('h3', {}, 'Nearest (smallest ‖μ_c − μ_c′‖)'));
        right.appendChild(neighbourTable('nearest', '‖μ_c − μ_c′‖', 'lc-tok-nearest'));
        right.appendChild(el('h3', {}, 'Most interfering (largest cos of centred means)'));
        right.appendChild(neighbourTable('interfering', 'cos', 'lc-tok-interfering'));
      } else {
        right.appendChild(el('p', { 'class': 'muted' }, view.note || 'No neighbours for this model.'));
      }
      grid.appendChild(right);
      detail.appendChild(grid);
      drawHist();
    }
    // a histogram of one column over all the model's classes, the chosen token marked
    var histSel = el('select', { id: 'lc-hist-col' });
    var histLog = el('input', { type: 'checkbox', id: 'lc-hist-log' });
    var histChartBox = el('div', { id: 'lc-hist-chart' });
    var histCaption = el('p', { 'class': 'sub', id: 'lc-hist-caption' });
    function fillHistColumns() {
      var keep = histSel.value, hist = view.hist || {};
      histSel.innerHTML = '';
      Object.keys(hist).forEach(function (c) { histSel.appendChild(el('option', { value: c }, label(c))); });
      if (keep && hist[keep]) histSel.value = keep;
      else if (hist.count) { histSel.value = 'count'; histLog.checked = true; }
      hists.hidden = !Object.keys(hist).length;
    }
    function setHistColumn(c) {
      histSel.value = c;
      histLog.checked = c === 'count';  // counts are heavy-tailed (Zipf): log by default
      drawHist();
      hists.scrollIntoView({ block: 'nearest' });
    }
    function drawHist() {
      histChartBox.innerHTML = '';
      var c = histSel.value, hist = (view.hist || {})[c];
      if (!hist) { histCaption.textContent = ''; return; }
      histLog.disabled = !hist.log_edges;
      var logX = histLog.checked && !!hist.log_edges;
      var edges = logX ? hist.log_edges : hist.edges, counts = logX ? hist.log_counts : hist.counts;
      var mark = null;
      if (!view.histOnly && selected >= 0) {
        var tok = view.data.token ? view.data.token[selected] : null;
        mark = { value: view.data[c] ? view.data[c][selected] : null,
          label: tok === null || tok === undefined ? 'id ' + view.data.token_id[selected] : tokenText(tok) };
      }
      histChartBox.appendChild(histChart({ edges: edges, counts: counts, logX: logX, mark: mark,
        title: label(c) + ' over all ' + view.total.toLocaleString('en-US') + ' classes', xLabel: label(c) }));
      var drawn = counts.reduce(function (s, x) { return s + x; }, 0);
      var text = 'Histogram of ' + meaning(c) + ' over all ' + view.total.toLocaleString('en-US') +
        ' classes of ' + view.model + (view.layer === null || view.layer === undefined ? '' : ' at ' +
        layerName(view.layer)) + ', not only the embedded ones: ' + counts.length + ' bins' +
        (logX ? ', log-spaced' : '') + ', ' + drawn.toLocaleString('en-US') + ' classes drawn';
      var left = [];
      if (hist.missing) left.push(hist.missing.toLocaleString('en-US') + ' without a value');
      if (logX && hist.nonpositive) left.push(hist.nonpositive.toLocaleString('en-US') + ' with a value ≤ 0 (not on a log axis)');
      text += (left.length ? ' (left out: ' + left.join(', ') + ')' : '') + '. ';
      if (mark && typeof mark.value === 'number') text += 'The line marks ' + mark.label + ' (' + fmt(mark.value) + '). ';
      else if (mark) text += mark.label + ' has no value in this column. ';
      histCaption.textContent = text + 'Hover over a bar for its range and count.';
    }
    hists.appendChild(el('h3', {}, 'Distribution of a column over all classes'));
    var hc = el('div', { 'class': 'controls' });
    hc.appendChild(labelled('column', histSel));
    hc.appendChild(labelled('log x axis', histLog));
    hists.appendChild(hc);
    hists.appendChild(histChartBox);
    hists.appendChild(histCaption);
    histSel.addEventListener('change', function () { setHistColumn(histSel.value); });
    histLog.addEventListener('change', drawHist);
    // the paper's Tables 4–5: top or bottom classes of a column, with the average row
    var columnSel = el('select', { id: 'lc-t45-col' });
    var sideSel = selectOf([['top', 'largest'], ['bottom', 'smallest']], 'lc-t45-side');
    var t45 = el('div');
    function fillColumns() {
      var keep = columnSel.value;
      columnSel.innerHTML = '';
      Object.keys(view.extremes).forEach(function (c) {
        columnSel.appendChild(el('option', { value: c }, label(c)));
      });
      if (keep && view.extremes[keep]) columnSel.value = keep;
      else if (view.extremes.count) columnSel.value = 'count';
    }
    function showViews() {
      t45.innerHTML = '';
      var sides = view.extremes[columnSel.value];
      if (!sides) return;
      var rows = sides[sideSel.value].map(function (values) { return { values: values }; });
      if (view.average) rows.push({ values: view.average, attrs: { 'class': 'avg' } });
      var table = tokenTable(view.columns, rows, 'lc-t45-table');
      if (view.average) {
        var last = table.tBodies[0].lastChild;
        last.cells[view.col.token].textContent = '(avg over all ' + view.total.toLocaleString('en-US') + ' classes)';
        last.cells[view.col.token_id].textContent = '';
        last.style.fontStyle = 'italic';
      }
      t45.appendChild(scrolled(table));
      enhanceTable(table, { filter: false });
    }
    views.appendChild(el('h3', {}, 'Tables 4–5: the tokens at either end of a column'));
    var vc = el('div', { 'class': 'controls' });
    vc.appendChild(labelled('column', columnSel));
    vc.appendChild(labelled('show the', sideSel));
    views.appendChild(vc);
    views.appendChild(t45);

    var pending = null;
    query.addEventListener('input', function () {
      clearTimeout(pending);
      pending = setTimeout(showMatches, 120);
    });
    mode.addEventListener('change', showMatches);
    caseBox.addEventListener('change', showMatches);
    // a new model or layer: the same token stays chosen where the new rows hold it
    function refresh() {
      var keep = view && !view.histOnly && selected >= 0 ? view.data.token_id[selected] : null;
      load();
      fillHistColumns();
      selected = -1;
      if (view.histOnly) { drawHist(); return; }
      showMatches();
      var again = keep === null ? -1 : view.data.token_id.indexOf(keep);
      if (again >= 0 && again !== selected) choose(again);
      fillColumns();
      showViews();
    }
    modelSel.addEventListener('change', function () { fillLayers(); refresh(); });
    layerSel.addEventListener('change', refresh);
    columnSel.addEventListener('change', showViews);
    sideSel.addEventListener('change', showViews);
    fillLayers();
    refresh();
  }

  // ---------------------------------------------------------------- start
  // Figures drawn by an older version name their points by <title> only.
  function nameOldPoints() {
    Array.prototype.forEach.call(document.querySelectorAll('svg.fig use > title'), function (t) {
      if (!t.parentNode.hasAttribute('data-model')) t.parentNode.setAttribute('data-model', t.textContent);
    });
  }
  function start() {
    nameOldPoints();
    Array.prototype.forEach.call(document.querySelectorAll('table.lc-sort'), function (t) { enhanceTable(t); });
    setupHover();
    setupCurves();
    setupLayers();
    setupExplorer();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
