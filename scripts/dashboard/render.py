#!/usr/bin/env python3
"""Draws packaging/grafana/auditns.json over a real run of auditns, as PNG.

As root, on the real kernel, with the project's Kafka broker running
(scripts/kafka/start.sh): starts `auditns run --output kafka --metrics`,
scrapes /metrics every second while it drives a scenario (light load, an
exec storm, a Kafka outage and recovery), stops auditns, then evaluates each
panel's PromQL queries on the scraped samples and draws the panels where the
dashboard places them. Grafana is not involved: the queries are evaluated by
the small PromQL subset below (selectors, rate, increase, sum [by],
histogram_quantile, + and / by a number), which is all the dashboard uses.

    python3 -m venv .cache/render-venv && .cache/render-venv/bin/pip install matplotlib
    eval "$(scripts/kafka/start.sh)"
    sudo .cache/render-venv/bin/python scripts/dashboard/render.py \
        --brokers "$KAFKA_BROKERS" --out docs/dashboard.png

Holds the project's audit lock (the one the tests take) for the run.
"""

import argparse
import fcntl
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
AUDIT_LOCK = "/run/auditns-test-audit.lock"


# ---- scraping ---------------------------------------------------------------

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(addr, instance):
    """One scrape: {(name, frozenset(labels)): value}."""
    out = {}
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=2) as r:
        for line in r.read().decode().splitlines():
            if not line or line[0] == "#":
                continue
            m = LINE.match(line)
            if not m:
                continue
            labels = dict(LABEL.findall(m.group(3) or ""))
            labels["instance"] = instance
            out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


# ---- a PromQL subset over the scraped samples --------------------------------

class Series(dict):
    """labels (frozenset) -> list of values, one per sample time (None = absent)."""


def tokenize(s):
    return re.findall(r'\d+\.?\d*e\d+|\d+\.\d+|\d+|[A-Za-z_:][A-Za-z0-9_:]*|\[[^\]]*\]|\{[^}]*\}|[()+/,*-]', s)


class Evaluator:
    def __init__(self, times, samples, windows):
        self.times, self.samples, self.windows = times, samples, windows

    def select(self, name):
        out = Series()
        for i, sc in enumerate(self.samples):
            for (n, labels), v in sc.items():
                if n == name:
                    out.setdefault(labels, [None] * len(self.times))[i] = v
        return out

    def window(self, rng):
        return self.windows.get(rng, self.windows["default"])

    def increase(self, series, rng, per_second):
        w = self.window(rng)
        out = Series()
        for labels, vals in series.items():
            res = []
            for i, t in enumerate(self.times):
                j = i
                while j > 0 and self.times[j - 1] >= t - w and vals[j - 1] is not None:
                    j -= 1
                if vals[i] is None or j == i:
                    res.append(None)
                    continue
                inc, prev = 0.0, vals[j]
                for k in range(j + 1, i + 1):  # counter resets count from zero
                    inc += vals[k] - prev if vals[k] >= prev else vals[k]
                    prev = vals[k]
                res.append(inc / (self.times[i] - self.times[j]) if per_second else inc)
            out[labels] = res
        return out

    def aggregate(self, series, by):
        out = Series()
        for labels, vals in series.items():
            key = frozenset((k, v) for k, v in labels if k in by)
            acc = out.setdefault(key, [None] * len(self.times))
            for i, v in enumerate(vals):
                if v is not None:
                    acc[i] = (acc[i] or 0.0) + v
        return out

    def quantile(self, q, series):
        groups = {}
        for labels, vals in series.items():
            d = dict(labels)
            le = float(d.pop("le"))
            groups.setdefault(frozenset(d.items()), []).append((le, vals))
        out = Series()
        for labels, buckets in groups.items():
            buckets.sort()
            res = []
            for i in range(len(self.times)):
                bs = [(le, v[i]) for le, v in buckets if v[i] is not None]
                total = bs[-1][1] if bs else 0
                if not bs or total <= 0:
                    res.append(None)
                    continue
                rank, lo_le, lo_c = q * total, 0.0, 0.0
                val = None
                for le, c in bs:
                    if c >= rank:
                        if math.isinf(le):
                            val = lo_le
                        else:
                            val = lo_le + (le - lo_le) * ((rank - lo_c) / (c - lo_c) if c > lo_c else 1)
                        break
                    lo_le, lo_c = le, c
                res.append(val)
            out[labels] = res
        return out

    # expr := term (('+' | '/') term)*
    def parse(self, expr):
        expr = re.sub(r'\{instance=~"\$instance"\}', "", expr)
        self.toks, self.pos = tokenize(expr), 0
        v = self.expr()
        if self.pos != len(self.toks):
            raise ValueError("unparsed: %s" % self.toks[self.pos:])
        return v

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, want=None):
        t = self.toks[self.pos]
        if want is not None and t != want:
            raise ValueError("expected %s, got %s" % (want, t))
        self.pos += 1
        return t

    def expr(self):
        left = self.term()
        while self.peek() in ("+", "/"):
            op = self.take()
            right = self.term()
            left = self.binop(op, left, right)
        return left

    def binop(self, op, a, b):
        f = (lambda x, y: x + y) if op == "+" else (lambda x, y: x / y)
        if isinstance(b, float):
            return Series({k: [None if x is None else f(x, b) for x in v] for k, v in a.items()})
        out = Series()
        for k, v in a.items():  # one-to-one on equal label sets
            if k in b:
                out[k] = [None if x is None or y is None else f(x, y) for x, y in zip(v, b[k])]
        return out

    def term(self):
        t = self.take()
        if re.match(r'^\d', t):
            return float(t)
        if t in ("rate", "increase"):
            self.take("(")
            name = self.take()
            rng = self.take()
            self.take(")")
            return self.increase(self.select(name), rng, t == "rate")
        if t == "sum":
            by = []
            if self.peek() == "by":
                self.take()
                self.take("(")
                while self.peek() != ")":
                    tok = self.take()
                    if tok != ",":
                        by.append(tok)
                self.take(")")
            self.take("(")
            inner = self.expr()
            self.take(")")
            return self.aggregate(inner, by)
        if t == "histogram_quantile":
            self.take("(")
            q = float(self.take())
            self.take(",")
            inner = self.expr()
            self.take(")")
            return self.quantile(q, inner)
        if t == "(":
            v = self.expr()
            self.take(")")
            return v
        return self.select(t)


def legend(fmt, labels):
    d = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: d.get(m.group(1), ""), fmt).strip()


# ---- the run -------------------------------------------------------------------

def run(args):
    fd = os.open(AUDIT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    tmp = tempfile.mkdtemp(prefix="auditns-dashboard-")
    binary = os.path.join(tmp, "auditns")
    subprocess.run(["make", "-s", "-C", REPO, "build"], check=True)
    subprocess.run(["cp", os.path.join(REPO, "bin", "auditns"), binary], check=True)
    addr = "127.0.0.1:%d" % args.port
    env = dict(os.environ,
               AUDITNS_KAFKA_TOPIC="auditns.dashboard.%d" % int(time.time()),
               AUDITNS_KAFKA_NAMESPACES_TOPIC="auditns.dashboard.ns.%d" % int(time.time()),
               AUDITNS_KAFKA_PARTITIONS="1",
               # Small enough that the exec storm overflows it: the loss
               # panels then show something.
               AUDITNS_AUDIT_BACKLOG_LIMIT=str(args.backlog_limit))
    log = open(os.path.join(tmp, "auditns.log"), "w")
    daemon = subprocess.Popen([binary, "run", "--output", "kafka", "--kafka-brokers", args.brokers,
                               "--metrics", addr, "--state-dir", os.path.join(tmp, "state")],
                              env=env, stdout=log, stderr=log)
    times, samples, t0 = [], [], time.time()
    stop = threading.Event()

    def scraper():
        while not stop.is_set():
            try:
                sc = scrape(addr, "host:9464")
                times.append(time.time() - t0)
                samples.append(sc)
            except OSError:
                pass
            stop.wait(1.0)

    kafka_env = dict(os.environ, KAFKA_PORT=args.brokers.rsplit(":", 1)[1])
    if args.controller_port:
        kafka_env["KAFKA_CONTROLLER_PORT"] = args.controller_port
    phases = []
    try:
        time.sleep(2)
        threading.Thread(target=scraper, daemon=True).start()

        def execs(n, parallel):
            procs = [subprocess.Popen(["/bin/sh", "-c", "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done" % n])
                     for _ in range(parallel)]
            for p in procs:
                p.wait()

        def light(seconds):
            end = time.time() + seconds
            while time.time() < end:
                execs(20, 1)
                time.sleep(0.5)

        light(20)
        phases.append((time.time() - t0, "exec storm"))
        execs(args.storm, 2)
        light(10)
        phases.append((time.time() - t0, "Kafka stopped"))
        subprocess.run([os.path.join(REPO, "scripts", "kafka", "stop.sh")], env=kafka_env, check=True)
        light(40)
        phases.append((time.time() - t0, "Kafka started"))
        subprocess.run([os.path.join(REPO, "scripts", "kafka", "start.sh")], env=kafka_env, check=True,
                       stdout=subprocess.DEVNULL)
        light(40)
    finally:
        stop.set()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        os.close(fd)
    return times, samples, phases


# ---- drawing --------------------------------------------------------------------

def draw(dash, times, samples, phases, out, windows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = Evaluator(times, samples, windows)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"])
    unit_h = 0.42  # inches per grid row
    fig = plt.figure(figsize=(20, rows * unit_h + 0.8), facecolor="#111217")
    fig.text(0.01, 1 - 0.35 / (rows * unit_h + 0.8), "%s  (a real run: %d scrapes over %.0f s; x axes in seconds)" % (dash["title"], len(times), times[-1]),
             color="#d8d9da", fontsize=14, weight="bold", va="center")
    top = 0.8 / (rows * unit_h + 0.8)
    usable = 1 - top
    for p in dash["panels"]:
        g = p["gridPos"]
        pad = 0.006
        x, w = g["x"] / 24 + pad, g["w"] / 24 - 2 * pad
        h = g["h"] / rows * usable - 2 * pad * 2
        y = 1 - top - (g["y"] + g["h"]) / rows * usable + pad * 2
        if p["type"] != "stat":  # room for the tick labels inside the panel
            x, w, y, h = x + 0.035, w - 0.04, y + 0.035, h - 0.04
        ax = fig.add_axes([x, y, w, h], facecolor="#181b1f")
        for s in ax.spines.values():
            s.set_color("#2c3235")
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.set_title(p["title"], color="#d8d9da", fontsize=10, loc="left")
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        results = []
        for q in p["targets"]:
            res = ev.parse(q["expr"])
            for labels, vals in sorted(res.items(), key=lambda kv: sorted(kv[0])):
                results.append((legend(q.get("legendFormat", ""), labels), vals))
        if p["type"] == "stat":
            ax.set_xticks([])
            ax.set_yticks([])
            if not results:
                ax.text(0.5, 0.45, "No data", color="#9fa7b3", ha="center", va="center", fontsize=16, transform=ax.transAxes)
                continue
            name, vals = results[0]
            last = next((v for v in reversed(vals) if v is not None), None)
            mappings = p["fieldConfig"]["defaults"].get("mappings", [])
            text, color = fmt(last, unit), "#3274d9"
            for m in mappings:
                opt = m.get("options", {}).get(str(int(last)) if last is not None else "")
                if opt:
                    text, color = opt["text"], {"red": "#c4162a", "green": "#37872d"}.get(opt["color"], color)
            steps = p["fieldConfig"]["defaults"].get("thresholds", {}).get("steps")
            if steps and not mappings and last is not None:
                for st in steps:
                    if st["value"] is None or last >= st["value"]:
                        color = {"red": "#c4162a", "green": "#37872d"}.get(st["color"], color)
            if p["fieldConfig"]["defaults"].get("displayName"):
                text = name
            ax.set_facecolor(color)
            ax.text(0.5, 0.45, text, color="white", ha="center", va="center",
                    fontsize=20 if len(text) < 16 else 12, weight="bold", transform=ax.transAxes)
            continue
        for name, vals in results:
            xs = [t for t, v in zip(times, vals) if v is not None]
            ys = [v for v in vals if v is not None]
            ax.plot(xs, ys, label=name, linewidth=1.4)
        for t, what in phases:
            ax.axvline(t, color="#5a6171", linestyle=":", linewidth=1)
            ax.text(t, 1.0, " " + what, color="#9fa7b3", fontsize=7, va="top", transform=ax.get_xaxis_transform())
        ax.set_xlim(0, times[-1])
        ax.grid(color="#2c3235", linewidth=0.6)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _, u=unit: fmt(v, u)))
        if results:
            ax.legend(loc="upper left", fontsize=7, facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#d8d9da",
                      bbox_to_anchor=(0, 0.9))
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "bytes":
        for u in ("B", "KiB", "MiB", "GiB"):
            if abs(v) < 1024:
                return "%.3g %s" % (v, u)
            v /= 1024
        return "%.3g TiB" % v
    if unit == "s":
        return "%.3g s" % v if v >= 1 or v == 0 else "%.3g ms" % (v * 1000)
    if unit == "ops":
        return fmt(v, "short") + "/s"
    if unit == "percentunit":
        return "%.3g%%" % (v * 100)
    if abs(v) >= 1000:
        return "%.3gk" % (v / 1000)
    return "%.3g" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", required=True, help="the project's Kafka broker (scripts/kafka/start.sh)")
    ap.add_argument("--controller-port", default=os.environ.get("KAFKA_CONTROLLER_PORT", ""))
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "dashboard.png"))
    ap.add_argument("--port", type=int, default=29464, help="metrics port of the run")
    ap.add_argument("--storm", type=int, default=4000, help="execs per loop in the storm (two loops)")
    ap.add_argument("--backlog-limit", type=int, default=256)
    ap.add_argument("--samples", help="reuse samples saved by an earlier run (JSON) instead of running")
    args = ap.parse_args()
    dash = json.load(open(os.path.join(REPO, "packaging", "grafana", "auditns.json")))
    saved = os.path.join(tempfile.gettempdir(), "auditns-dashboard-samples.json")
    if args.samples:
        d = json.load(open(args.samples))
        times, phases = d["times"], d["phases"]
        samples = [{(k[0], frozenset(map(tuple, k[1]))): v for k, v in s} for s in d["samples"]]
    else:
        times, samples, phases = run(args)
        json.dump({"times": times, "phases": phases,
                   "samples": [[[[n, sorted(l)], v] for (n, l), v in s.items()] for s in samples]}, open(saved, "w"))
    # The run is minutes long, not hours: 1m rates over 15 s, 1h increases
    # over the whole run.
    windows = {"[1m]": 15, "[5m]": 15, "[1h]": 1e9, "default": 15}
    draw(dash, times, samples, phases, args.out, windows)
    print("wrote %s (%d scrapes over %.0f s)" % (args.out, len(times), times[-1]), file=sys.stderr)


if __name__ == "__main__":
    main()
