"""Check the Grafana dashboard offline: its shape (every panel placed on the 24-column
grid without overlapping another, every query with a refId and an expression), that
every metric it queries is one skuflow registers (the names are read from the code), and
that every expression is valid PromQL (each written as a recording rule for
`promtool check rules`).

    dashboard.py DASHBOARD.json REPO_ROOT PROMTOOL
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml


def registered(root):
    names = set()
    for crate in ("processor", "api", "ingest"):
        for dirpath, _, files in os.walk(os.path.join(root, crate, "src")):
            for f in files:
                if f.endswith(".rs"):
                    text = open(os.path.join(dirpath, f)).read()
                    names.update(re.findall(r'"(skuflow_[a-z_]+)"', text))
    return names


def main(path, root, promtool):
    dash = json.load(open(path))
    errors = []
    for field in ("title", "uid", "panels"):
        if not dash.get(field):
            errors.append("dashboard has no %s" % field)
    known = registered(root)
    boxes, exprs = [], []
    for p in dash.get("panels", []):
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            errors.append("panel %r: gridPos %r is not on the 24-column grid" % (p.get("title"), g))
            continue
        for other, box in boxes:
            if g["x"] < box["x"] + box["w"] and box["x"] < g["x"] + g["w"] and g["y"] < box["y"] + box["h"] and box["y"] < g["y"] + g["h"]:
                errors.append("panel %r overlaps panel %r" % (p.get("title"), other))
        boxes.append((p.get("title"), g))
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        if not targets:
            errors.append("panel %r has no query" % p.get("title"))
        for t in targets:
            if not t.get("refId") or not t.get("expr"):
                errors.append("panel %r: a query without refId or expr" % p.get("title"))
                continue
            exprs.append((p["title"], t["expr"]))
            for name in re.findall(r"\bskuflow_[a-z_]+", t["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if base not in known:
                    errors.append("panel %r queries %s, which skuflow does not register" % (p["title"], name))
    # PromQL: each expression as a recording rule, the dashboard's variables filled in.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:panel_%d" % i, "expr": e.replace("$namespace", "skuflow")}
        for i, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(rules, f)
    out = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    if out.returncode != 0:
        errors.append("promtool: " + (out.stdout + out.stderr).strip().replace("\n", " | "))
    for e in errors:
        print("dashboard: " + e)
    if errors:
        return 1
    print("dashboard: %d panels, %d queries: valid" % (len(boxes), len(exprs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
