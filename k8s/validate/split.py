"""Split a rendered overlay (kubectl kustomize output) into one file per document, by the
validator that checks its kind; refuse any kind no validator covers.

    split.py RENDERED.yaml OUTDIR

OUTDIR/core/       Kubernetes' own kinds        -> kubernetes-validate
OUTDIR/models/     Prometheus Operator and KEDA -> models.py (cloudcoil models)
OUTDIR/strimzi/K/  Strimzi kind K               -> check-jsonschema, k8s/schemas
OUTDIR/promtool/   each PrometheusRule's groups -> promtool check rules (PromQL syntax)
"""

import os
import sys

import yaml

# apiVersions whose kinds kubernetes-validate knows (Kubernetes' built-in API groups
# that k8s/ uses or may).
CORE = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2",
        "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"}
MODELS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
STRIMZI = {("kafka.strimzi.io/v1beta2", k) for k in ("Kafka", "KafkaNodePool", "KafkaTopic")}


def main(rendered, out):
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    counts, unknown = {}, []
    for i, doc in enumerate(docs):
        api, kind = doc.get("apiVersion"), doc.get("kind")
        name = (doc.get("metadata") or {}).get("name", "unnamed")
        if api in CORE:
            group = "core"
        elif (api, kind) in MODELS:
            group = "models"
        elif (api, kind) in STRIMZI:
            group = os.path.join("strimzi", kind)
        else:
            unknown.append("%s %s/%s" % (api, kind, name))
            continue
        directory = os.path.join(out, group)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "%03d-%s-%s.yaml" % (i, kind, name)), "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        counts[group] = counts.get(group, 0) + 1
        if kind == "PrometheusRule":
            rules = os.path.join(out, "promtool")
            os.makedirs(rules, exist_ok=True)
            with open(os.path.join(rules, "%s.rules.yaml" % name), "w") as f:
                yaml.safe_dump({"groups": (doc.get("spec") or {}).get("groups")}, f, sort_keys=False)
    for group in sorted(counts):
        print("  %-22s %d documents" % (group, counts[group]))
    if unknown:
        for u in unknown:
            print("  no validator for %s" % u, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
