"""Draw every graph panel of a Grafana dashboard from a Prometheus server: each target's
PromQL (with $namespace set) is run as a range query over [start, end], and each panel
becomes one subplot with a line per series, titled like the panel. Used by
scripts/dashboard-png; the picture stands in for a Grafana screenshot."""

import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import requests  # noqa: E402


def query(prometheus, expr, start, end, step):
    r = requests.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    r.raise_for_status()
    body = r.json()
    if body.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def label_of(metric, legend):
    if legend:
        text = legend
        for k, v in metric.items():
            text = text.replace("{{" + k + "}}", v)
        return text
    shown = {k: v for k, v in metric.items() if k not in ("__name__", "namespace", "job", "instance")}
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--start", type=float, required=True)
    ap.add_argument("--end", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--caption", default="")
    ap.add_argument("--namespace", default="skuflow")
    args = ap.parse_args()

    dashboard = json.load(open(args.dashboard))
    panels = [p for p in dashboard["panels"] if p.get("targets")]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6, rows * 3.2), squeeze=False)
    step = max(2, int((args.end - args.start) / 200))
    empty = []
    for ax, panel in zip(axes.flat, panels):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        drawn = 0
        for target in panel["targets"]:
            expr = target["expr"].replace("$namespace", args.namespace)
            for series in query(args.prometheus, expr, args.start, args.end, step):
                points = [(float(t) - args.start, float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if not math.isnan(v)]
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=label_of(series["metric"], target.get("legendFormat")))
                drawn += 1
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel("seconds into the run", fontsize=8)
        if unit:
            ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        if drawn:
            ax.legend(fontsize=6, loc="upper right")
        else:
            ax.text(0.5, 0.5, "no data (nothing happened)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="gray")
            empty.append(panel["title"])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{dashboard.get('title', 'dashboard')}: {args.caption}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(args.out, dpi=80)
    print(f"{len(panels)} panels, {len(empty)} without data: {empty}")


if __name__ == "__main__":
    main()
