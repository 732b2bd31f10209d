/* Usage charts (uPlot), fed by the panel's own JSON: a guest's and a host's usage card, and the lab page's
 * sparklines.
 *
 * Every word comes from data-msg-* attributes, which the templates translate. Every chart also has a text
 * summary and a table in the page, so the canvases are aria-hidden. Colours come from Bootstrap's CSS
 * variables, so a dark theme (data-bs-theme="dark") colours the charts too. Times are written in the panel's
 * time zone and language (data-tz, data-lang). No inline script: loaded with defer after uPlot and htmx, it
 * draws whatever htmx brings in (the usage card's fragment, each poll of the lab's table).
 */
(function () {
  "use strict";
  if (!window.uPlot || !window.htmx) {
    return;
  }
  const plots = new Set();
  const HEIGHT = 180;

  function css(name, fallback) {
    return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
  }

  function palette() {
    return {
      text: css("--bs-body-color", "#212529"),
      grid: css("--bs-border-color", "#dee2e6"),
      series: [
        css("--bs-primary", "#0d6efd"),
        css("--bs-danger", "#dc3545"),
        css("--bs-success", "#198754"),
        css("--bs-warning", "#ffc107"),
        css("--bs-info", "#0dcaf0"),
        css("--bs-purple", "#6f42c1"),
        css("--bs-pink", "#d63384"),
        css("--bs-teal", "#20c997"),
      ],
      rest: css("--bs-secondary", "#6c757d"),
    };
  }

  function alpha(color, a) {
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
    if (!m) {
      return color;
    }
    return "rgba(" + [1, 2, 3].map((i) => parseInt(m[i], 16)).join(",") + "," + a + ")";
  }

  function timeFormat(root) {
    // The 24-hour clock of the text summaries ("14:32"), in the panel's time zone.
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: root.dataset.tz || undefined };
    if (root.dataset.range && root.dataset.range !== "2h") {
      options.day = "numeric";
      options.month = "short";
    }
    let format;
    try {
      format = new Intl.DateTimeFormat(root.dataset.lang || document.documentElement.lang || "en", options);
    } catch (e) {
      format = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
    }
    return (ts) => (ts == null ? "" : format.format(new Date(ts * 1000)));
  }

  function perSecond(v) {
    if (v == null) {
      return "";
    }
    const units = ["B", "kB", "MB", "GB"];
    let i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    return short(v) + " " + units[i] + "/s";
  }

  // 0, 0.5, 3.2, 45, 97: whole numbers as they are, small ones with one decimal.
  function short(v) {
    return Number.isInteger(v) || Math.abs(v) >= 10 ? String(Math.round(v)) : v.toFixed(1);
  }

  const percent = (v) => (v == null ? "" : short(v) + " %");
  const mebibytes = (v) => (v == null ? "" : v >= 10240 ? short(v / 1024) + " GiB" : Math.round(v) + " MiB");
  // An axis keeps one unit: GiB for all its labels once the largest is 10 GiB or more.
  mebibytes.axis = (splits) => {
    const big = Math.max.apply(null, splits) >= 10240;
    return splits.map((v) => (big ? short(v / 1024) + " GiB" : Math.round(v) + " MiB"));
  };

  function line(label, color, fmt, fill) {
    return { label: label, stroke: color, width: 1.5, fill: fill ? alpha(color, 0.15) : undefined, value: (u, v) => fmt(v), spanGaps: false };
  }

  function chart(el, root, series, data, yFmt, yRange, live) {
    const p = palette();
    const when = timeFormat(root);
    const axis = { stroke: p.text, grid: { stroke: p.grid, width: 1 }, ticks: { stroke: p.grid, width: 1 } };
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: HEIGHT,
      series: [{ value: (u, ts) => when(ts) }].concat(series),
      scales: { x: { time: true }, y: { range: yRange || ((u, min, max) => [0, max > 0 ? max * 1.1 : 1]) } },
      axes: [
        Object.assign({ values: (u, splits) => splits.map(when), space: 70 }, axis),
        Object.assign({ values: (u, splits) => (yFmt.axis ? yFmt.axis(splits) : splits.map(yFmt)), size: 80 }, axis),
      ],
      legend: { live: live !== false },
      cursor: { drag: { x: false, y: false } },
    };
    el.replaceChildren();
    const plot = new window.uPlot(opts, data, el);
    plots.add(plot);
    return plot;
  }

  function words(root) {
    return (name) => root.getAttribute("data-msg-" + name) || name;
  }

  // ---------------------------------------------------------------- a guest's card
  function guestCharts(root, d) {
    const msg = words(root);
    const c = palette().series;
    const slots = {};
    root.querySelectorAll("[data-chart]").forEach((el) => (slots[el.dataset.chart] = el));
    if (slots.cpu) {
      chart(slots.cpu, root, [line(msg("average"), c[0], percent, true), line(msg("peak"), c[1], percent)], [d.t, d.cpu, d.cpu_max], percent, [0, 100]);
    }
    if (slots.mem) {
      chart(slots.mem, root, [line(msg("memory"), c[2], mebibytes, true)], [d.t, d.mem_mb], mebibytes);
    }
    if (slots.net) {
      chart(slots.net, root, [line(msg("received"), c[0], perSecond, true), line(msg("sent"), c[3], perSecond)], [d.t, d.net_rx, d.net_tx], perSecond);
    }
    if (slots.disk) {
      chart(slots.disk, root, [line(msg("read"), c[4], perSecond, true), line(msg("written"), c[1], perSecond)], [d.t, d.disk_read, d.disk_write], perSecond);
    }
  }

  // ---------------------------------------------------------------- a host's card: guests stacked under the host
  function stacked(root, el, layers, total, restLabel, fmt, yRange, extra) {
    // layers: [{label, values}] bottom first; the host's own figure is the top, the gap under it "rest".
    const p = palette();
    const n = total.length;
    const rest = total.map((v, i) => (v == null ? null : Math.max(v - layers.reduce((s, l) => s + (l.values[i] || 0), 0), 0)));
    const all = layers.concat([{ label: restLabel, values: rest, color: p.rest }]);
    const sums = [];
    let running = new Array(n).fill(0);
    all.forEach((layer) => {
      running = running.map((s, i) => (total[i] == null ? null : (s || 0) + (layer.values[i] || 0)));
      sums.push(running);
    });
    // Drawn top first, so each lower band paints over the one above it: stacked bands.
    const series = [];
    const data = [total.map((_, i) => i)];
    for (let k = all.length - 1; k >= 0; k -= 1) {
      const color = all[k].color || p.series[k % p.series.length];
      series.push({ label: all[k].label, stroke: color, width: 1, fill: alpha(color, 0.75), value: () => "" });
      data.push(sums[k]);
    }
    (extra || []).forEach((e) => {
      series.push({ label: e.label, stroke: p.text, width: 1.5, dash: [4, 4], value: () => "" });
      data.push(e.values);
    });
    return { series: series, data: data, fmt: fmt, yRange: yRange };
  }

  function hostCharts(root, d) {
    const msg = words(root);
    const slots = {};
    root.querySelectorAll("[data-chart]").forEach((el) => (slots[el.dataset.chart] = el));
    const draw = (el, s) => {
      s.data[0] = d.t;
      chart(el, root, s.series, s.data, s.fmt, s.yRange, false);
    };
    if (slots["host-cpu"]) {
      const layers = d.guests.map((g) => ({ label: g.label, values: g.cpu }));
      draw(slots["host-cpu"], stacked(root, slots["host-cpu"], layers, d.cpu, msg("rest"), percent, [0, 100]));
    }
    if (slots["host-mem"]) {
      const layers = d.guests.map((g) => ({ label: g.label, values: g.mem }));
      const total = d.total_mem ? [{ label: msg("total"), values: d.t.map(() => d.total_mem) }] : [];
      draw(slots["host-mem"], stacked(root, slots["host-mem"], layers, d.mem, msg("rest"), mebibytes, null, total));
    }
  }

  function loadCard(root) {
    fetch(root.dataset.usageUrl, { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((d) => (root.dataset.kind === "host" ? hostCharts(root, d) : guestCharts(root, d)))
      .catch(() => {
        const error = root.querySelector("[data-usage-error]");
        if (error) {
          error.textContent = words(root)("error");
          error.hidden = false;
        }
      });
  }

  // ---------------------------------------------------------------- the lab page's sparklines
  const sparkCache = { key: "", at: 0, data: null };
  const SPARK_FRESH_MS = 30000;

  function drawSparks(table, d) {
    const p = palette();
    table.querySelectorAll(".xp-spark[data-guest]").forEach((el) => {
      const g = d.guests[el.dataset.guest];
      if (!g || !g.cpu.some((v) => v != null)) {
        el.replaceChildren();
        return;
      }
      const color = el.closest("[data-runaway]") ? p.series[1] : p.series[0];
      const opts = {
        width: 90,
        height: 24,
        series: [{}, { stroke: color, width: 1, fill: alpha(color, 0.2) }],
        scales: { x: { time: false }, y: { range: [0, 100] } },
        axes: [{ show: false }, { show: false }],
        legend: { show: false },
        cursor: { show: false },
      };
      el.replaceChildren();
      new window.uPlot(opts, [d.t, g.cpu], el);
    });
  }

  function sparklines(table) {
    const ids = Array.from(table.querySelectorAll(".xp-spark[data-guest]"), (el) => el.dataset.guest);
    if (!ids.length) {
      return;
    }
    const key = table.dataset.sparklinesUrl + "?g=" + ids.join(",");
    if (sparkCache.key === key && Date.now() - sparkCache.at < SPARK_FRESH_MS) {
      drawSparks(table, sparkCache.data);
      return;
    }
    fetch(key, { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((d) => {
        Object.assign(sparkCache, { key: key, at: Date.now(), data: d });
        if (table.isConnected) {
          drawSparks(table, d);
        } else {
          const now = document.getElementById("guest-table");
          if (now) {
            drawSparks(now, d);
          }
        }
      })
      .catch(() => {});
  }

  // ---------------------------------------------------------------- wiring
  window.htmx.onLoad((elt) => {
    const scope = elt || document.body;
    const cards = scope.matches && scope.matches(".xp-usage") ? [scope] : scope.querySelectorAll(".xp-usage");
    cards.forEach(loadCard);
    const table = scope.id === "guest-table" ? scope : scope.querySelector && scope.querySelector("#guest-table");
    if (table && table.dataset.sparklinesUrl) {
      sparklines(table);
    }
  });

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      plots.forEach((plot) => {
        const el = plot.root.parentElement;
        if (!el || !el.isConnected) {
          plots.delete(plot);
          return;
        }
        plot.setSize({ width: Math.max(el.clientWidth, 200), height: HEIGHT });
      });
    }, 150);
  });
})();
