"""Plots and a Markdown table from scripts/bench_compare.py's results.json: latency
(p50 and p99) against the offered rate for each system, reserves spread and hot, and
reads; the highest rate each sustained with p99 <= 50 ms; CPU per command."""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SLO_MS = 50.0


def good(r):
    return (r["p99_ms"] <= SLO_MS and r["achieved_rate"] >= 0.95 * r["offered_rate"]
            and r["errors"] <= 0.01 * max(r["sent"], 1) and r["dropped"] == 0)


def sustained(runs):
    """The highest offered rate R such that every run up to R was answered at >= 95%,
    with p99 <= SLO and < 1% errors (a good run above a bad one does not count)."""
    best = 0
    for r in sorted(runs, key=lambda r: r["offered_rate"]):
        if not good(r):
            break
        best = r["offered_rate"]
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True, help="directory for the PNGs and table.md")
    args = ap.parse_args()
    data = json.load(open(args.results))
    runs, meta = data["runs"], data["meta"]
    groups = {}
    for r in runs:
        groups.setdefault((r["mode"], r["system"]), []).append(r)

    modes = [("spread", f"reserve, spread over {meta['skus_spread']} SKUs"), ("hot", "reserve, one hot SKU"),
             ("read", "availability read"), ("trivial", "empty handler")]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for ax, (mode, title) in zip(axes, modes[:3]):
        for (m, system), rs in sorted(groups.items()):
            if m != mode and not (mode == "read" and m == "trivial"):
                continue
            rs = sorted(rs, key=lambda r: r["offered_rate"])
            xs = [r["offered_rate"] for r in rs]
            label = system if m != "trivial" else f"{system} empty handler"
            line, = ax.plot(xs, [r["p99_ms"] for r in rs], marker="o", label=f"{label} p99")
            ax.plot(xs, [r["p50_ms"] for r in rs], marker=".", linestyle="--", color=line.get_color(),
                    label=f"{label} p50")
        ax.axhline(SLO_MS, color="gray", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (requests/s, open loop)")
        ax.set_ylabel("latency (ms)")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle(f"Latency against offered rate, {meta['date']}, {meta['cpus']} cores ({meta['cpu_model']}); "
                 f"{meta['duration_s']:.0f} s per point, load generator on the same machine")
    fig.tight_layout()
    fig.savefig(f"{args.out}/latency-vs-rate.png", dpi=80)

    lines = ["| system | workload | offered/s | answered/s | p50 ms | p99 ms | p99.9 ms | errors | CPU µs per command (by process) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        cpu = ", ".join(f"{k} {v / max(r['ok'] + r['rejected'], 1) * 1e6:.0f}" for k, v in sorted(r["cpu_s"].items()))
        lines.append(f"| {r['system']} | {r['mode']} | {r['offered_rate']:.0f} | {r['achieved_rate']:.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p999_ms']:.1f} | {r['errors'] + r['dropped']} | "
                     f"{r['cpu_us_per_command']:.0f} ({cpu}) |")
    lines += ["", f"Highest offered rate sustained with p99 <= {SLO_MS:.0f} ms (every rate up to it answered >= 95%, errors < 1%):", "",
              "| workload | " + " | ".join(sorted({s for _, s in groups})) + " |",
              "|---|" + "---:|" * len({s for _, s in groups})]
    for mode, title in modes:
        cells = [str(int(sustained(groups.get((mode, s), [])))) if (mode, s) in groups else "" for s in
                 sorted({s for _, s in groups})]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    open(f"{args.out}/table.md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
