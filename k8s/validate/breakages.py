"""Deliberately broken copies of a rendered overlay, one mistake each, for
scripts/validate-k8s to prove that its validators reject what they should: a validator
that passes everything proves nothing.

    breakages.py RENDERED.yaml OUTDIR    writes OUTDIR/<case>.yaml, prints the cases
"""

import copy
import os
import sys

import yaml


def find(docs, kind, name=None):
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name or d["spec"].get("topicName", "").endswith(name)):
            return d
    raise SystemExit("breakages: no %s %s in the rendered overlay" % (kind, name))


def sts_grace_is_a_string(docs):
    find(docs, "StatefulSet")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "90"


def sts_misspelt_field(docs):
    spec = find(docs, "StatefulSet")["spec"]
    spec["podManagmentPolicy"] = spec.pop("podManagementPolicy")


def deployment_probe_port_is_a_list(docs):
    c = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    c["readinessProbe"]["httpGet"]["port"] = [8080]


def topic_misspelt_field(docs):
    spec = find(docs, "KafkaTopic", "commands")["spec"]
    spec["partitons"] = spec.pop("partitions")


def topic_misspelt_config(docs):
    config = find(docs, "KafkaTopic", "commands")["spec"]["config"]
    config["retention.msx"] = config.pop("retention.ms")


def kafka_port_is_a_string(docs):
    find(docs, "Kafka")["spec"]["kafka"]["listeners"][0]["port"] = "9092"


def nodepool_unknown_role(docs):
    find(docs, "KafkaNodePool")["spec"]["roles"] = ["broker", "zookeeper"]


def scaledobject_without_target(docs):
    del find(docs, "ScaledObject")["spec"]["scaleTargetRef"]


def scaledobject_max_is_a_string(docs):
    so = find(docs, "ScaledObject")["spec"]
    so["maxReplicaCount"] = str(so["maxReplicaCount"])


def servicemonitor_misspelt_field(docs):
    endpoint = find(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    endpoint["intervall"] = endpoint.pop("interval")


def prometheusrule_without_expr(docs):
    del find(docs, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["expr"]


def prometheusrule_bad_promql(docs):
    rule = find(docs, "PrometheusRule")["spec"]["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace(")", "", 1)


def unknown_kind(docs):
    docs.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "skuflow"}})


def changelog_deleted(docs):
    find(docs, "KafkaTopic", "changelog")["spec"]["config"]["cleanup.policy"] = "delete"


def changelog_tombstones_short(docs):
    find(docs, "KafkaTopic", "changelog")["spec"]["config"]["delete.retention.ms"] = 3600000


def partitions_differ(docs):
    find(docs, "KafkaTopic", "availability")["spec"]["partitions"] += 1


def scaled_past_partitions(docs):
    find(docs, "ScaledObject")["spec"]["maxReplicaCount"] += 1


def commands_on_create_time(docs):
    find(docs, "KafkaTopic", "commands")["spec"]["config"]["message.timestamp.type"] = "CreateTime"


def instance_not_pod_name(docs):
    env = find(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    for var in env:
        if var["name"] == "SKUFLOW_INSTANCE":
            var.pop("valueFrom")
            var["value"] = "processor-0"


CASES = [f for name, f in sorted(globals().items()) if callable(f) and f.__module__ == "__main__" and name not in ("find", "main")]

# What the rejection of each case must say: a mistake rejected for another reason (some
# other rule tripping over the copy) would prove nothing about the validator meant.
EXPECT = {
    "changelog_deleted": "changelog must be compacted",
    "changelog_tombstones_short": "keeps tombstones",
    "commands_on_create_time": "LogAppendTime",
    "deployment_probe_port_is_a_list": "readinessProbe",
    "instance_not_pod_name": "SKUFLOW_INSTANCE must be the pod name",
    "kafka_port_is_a_string": "listeners[0].port",
    "nodepool_unknown_role": "'zookeeper' is not one of",
    "partitions_differ": "same partition count",
    "prometheusrule_bad_promql": "could not parse expression",
    "prometheusrule_without_expr": "field 'expr' must be set",
    "scaled_past_partitions": "maxReplicaCount 5 must equal",
    "scaledobject_max_is_a_string": "spec.maxReplicaCount",
    "scaledobject_without_target": "spec.scaleTargetRef",
    "servicemonitor_misspelt_field": "intervall",
    "sts_grace_is_a_string": "terminationGracePeriodSeconds",
    "sts_misspelt_field": "podManagmentPolicy",
    "topic_misspelt_config": "retention.msx",
    "topic_misspelt_field": "'partitions' is a required property",
    "unknown_kind": "no validator for example.com/v1 Widget",
}


def main(rendered, out):
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    os.makedirs(out, exist_ok=True)
    for case in CASES:
        broken = copy.deepcopy(docs)
        case(broken)
        with open(os.path.join(out, case.__name__ + ".yaml"), "w") as f:
            yaml.safe_dump_all(broken, f, sort_keys=False)
        if case.__name__ not in EXPECT:
            raise SystemExit("breakages: %s has no EXPECT entry" % case.__name__)
        with open(os.path.join(out, case.__name__ + ".expect"), "w") as f:
            f.write(EXPECT[case.__name__])
        print(case.__name__)


if __name__ == "__main__":
    main(*sys.argv[1:])
