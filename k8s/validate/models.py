"""Validate Prometheus Operator and KEDA resources with the cloudcoil models (pydantic
classes generated from those projects' CRDs).

    models.py FILE...

Two checks per document: pydantic in strict mode (types, required fields, enums; no
coercion of "3" into 3), and, since the models ignore fields they do not know, a
comparison of the document with what the model kept: a field the model dropped is a
field the CRD does not have, i.e. a typo.
"""

import sys

import pydantic
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as prom

MODELS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prom.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): prom.PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): prom.PrometheusRule,
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
}


def dropped(given, kept, path=""):
    """Paths present in `given` but not in `kept`."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "/"]
        out = []
        for key, value in given.items():
            if key not in kept:
                out.append("%s/%s" % (path, key))
            else:
                out.extend(dropped(value, kept[key], "%s/%s" % (path, key)))
        return out
    if isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return [path or "/"]
        return [p for i, v in enumerate(given) for p in dropped(v, kept[i], "%s/%d" % (path, i))]
    return []


def check(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    key = (doc.get("apiVersion"), doc.get("kind"))
    model = MODELS.get(key)
    if model is None:
        return ["no model for %s %s" % key]
    try:
        parsed = model.model_validate(doc, strict=True)
    except pydantic.ValidationError as e:
        return ["%s: %s" % (".".join(map(str, err["loc"])), err["msg"]) for err in e.errors()]
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return ["unknown field %s" % p for p in dropped(doc, kept)]


def main(paths):
    """Print each invalid document with its errors, then a count; 1 if any was invalid."""
    failed = 0
    for path in paths:
        errors = check(path)
        if errors:
            failed += 1
            for e in errors:
                print("  %s: INVALID: %s" % (path, e))
    print("  models: %d of %d documents valid" % (len(paths) - failed, len(paths)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
