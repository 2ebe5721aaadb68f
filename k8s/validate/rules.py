"""What skuflow requires across the documents of a rendered overlay, beyond what any
one resource's schema can say. Each rule names where the requirement comes from.

    rules.py RENDERED.yaml
"""

import sys

import yaml

SUFFIXES = ["commands", "replies", "events", "changelog", "availability", "deadletter"]
TRANSACTION_TIMEOUT_S = 60  # ProcessorConfig::transaction_timeout
DEFAULT_WINDOW_MS = 86_400_000  # MachineConfig's dedup window (24 h)


class Rules:
    def __init__(self, docs):
        self.docs = docs
        self.errors = []

    def kind(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind, name=None):
        found = [d for d in self.kind(kind) if name is None or d["metadata"]["name"] == name]
        if len(found) != 1:
            self.fail("expected one %s%s, found %d" % (kind, " " + name if name else "", len(found)))
            return None
        return found[0]

    def fail(self, message):
        self.errors.append(message)

    def expect(self, ok, message):
        if not ok:
            self.fail(message)
        return ok


def env_of(container, configmaps):
    """The container's SKUFLOW_* variables: envFrom ConfigMaps, then env (which wins)."""
    env = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and ref["name"] in configmaps:
            env.update(configmaps[ref["name"]].get("data") or {})
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def matches(selector, labels):
    wanted = (selector or {}).get("matchLabels") or selector or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def check(docs):
    r = Rules(docs)
    configmaps = {d["metadata"]["name"]: d for d in r.kind("ConfigMap")}
    namespaces = {d["metadata"].get("namespace") for d in docs if d.get("kind") != "Namespace"}
    r.expect(len(namespaces) == 1, "every resource in one namespace, found %s" % sorted(map(str, namespaces)))
    namespace = next(iter(namespaces))

    sts = r.one("StatefulSet", "skuflow-processor")
    api = r.one("Deployment", "skuflow-api")
    kafka = r.one("Kafka")
    scaled = r.one("ScaledObject", "skuflow-processor")
    if None in (sts, api, kafka, scaled):
        return r.errors
    proc_container = sts["spec"]["template"]["spec"]["containers"][0]
    proc_env = env_of(proc_container, configmaps)
    api_container = api["spec"]["template"]["spec"]["containers"][0]
    api_env = env_of(api_container, configmaps)
    prefix = proc_env.get("SKUFLOW_TOPIC_PREFIX", "skuflow")
    r.expect(api_env.get("SKUFLOW_TOPIC_PREFIX", "skuflow") == prefix, "the API and the processors use one topic prefix")
    window = int(proc_env.get("SKUFLOW_IDEMPOTENCY_WINDOW_MS", DEFAULT_WINDOW_MS))
    group = proc_env.get("SKUFLOW_GROUP", "skuflow-processor")

    # Kafka: brokers, replication, the address the clients use.
    cluster = kafka["metadata"]["name"]
    pools = [p for p in r.kind("KafkaNodePool") if p["metadata"]["labels"].get("strimzi.io/cluster") == cluster]
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    r.expect(brokers >= 1 and controllers % 2 == 1, "Kafka %s: %d brokers, %d controllers (an odd quorum)" % (cluster, brokers, controllers))
    config = kafka["spec"]["kafka"].get("config", {})
    for rf, isr in [("default.replication.factor", "min.insync.replicas"),
                    ("transaction.state.log.replication.factor", "transaction.state.log.min.isr")]:
        r.expect(config.get(rf, 1) <= brokers, "Kafka %s=%s needs that many brokers, there are %d" % (rf, config.get(rf), brokers))
        r.expect(config.get(isr, 1) <= config.get(rf, 1), "Kafka %s=%s above %s=%s: every write would be refused" % (isr, config.get(isr), rf, config.get(rf)))
    r.expect(config.get("offsets.topic.replication.factor", 3) <= brokers, "offsets.topic.replication.factor above the broker count")
    plain = [l for l in kafka["spec"]["kafka"]["listeners"] if not l["tls"]]
    expected = {"%s-kafka-bootstrap:%d" % (cluster, l["port"]) for l in plain}
    expected |= {"%s-kafka-bootstrap.%s.svc:%d" % (cluster, namespace, l["port"]) for l in plain}
    for who, env in (("processors", proc_env), ("API", api_env)):
        r.expect(env.get("SKUFLOW_BROKERS") in expected,
                 "the %s' SKUFLOW_BROKERS %r is not a plain listener of Kafka %s (skuflow has no TLS settings): %s" % (who, env.get("SKUFLOW_BROKERS"), cluster, sorted(expected)))

    # Topics (topics::names): all six, one partition count, the configs skuflow needs.
    topics = {}
    for t in r.kind("KafkaTopic"):
        r.expect(t["metadata"]["labels"].get("strimzi.io/cluster") == cluster, "KafkaTopic %s belongs to Kafka %s" % (t["metadata"]["name"], cluster))
        topics[t["spec"].get("topicName", t["metadata"]["name"])] = t["spec"]
    wanted = ["%s.%s" % (prefix, s) for s in SUFFIXES]
    r.expect(sorted(topics) == sorted(wanted), "KafkaTopics %s, skuflow needs %s" % (sorted(topics), wanted))
    partitions = {t.get("partitions") for t in topics.values() if isinstance(t.get("partitions"), int)}
    r.expect(len(partitions) == 1, "every topic needs the same partition count (changelog and availability mirror commands; outputs go to the source partition's number), found %s" % sorted(map(str, partitions)))
    p = max(partitions) if partitions else 0
    for name, spec in topics.items():
        r.expect(spec.get("replicas", 0) <= brokers, "%s: %s replicas on %d brokers" % (name, spec.get("replicas"), brokers))
        r.expect(spec.get("replicas", 0) >= config.get("min.insync.replicas", 1), "%s: fewer replicas than min.insync.replicas: every write would be refused" % name)
    cfg = lambda suffix: (topics.get("%s.%s" % (prefix, suffix)) or {}).get("config", {})
    r.expect(cfg("commands").get("message.timestamp.type") == "LogAppendTime", "%s.commands must be stamped with LogAppendTime (the processor refuses to start otherwise)" % prefix)
    for suffix, why in (("commands", "the processor refuses to start"), ("replies", "polls for older replies find nothing")):
        retention = int(cfg(suffix).get("retention.ms", 604_800_000))
        r.expect(retention < 0 or retention >= window, "%s.%s keeps records %d ms, less than the idempotency window %d ms: %s" % (prefix, suffix, retention, window, why))
    for suffix in ("changelog", "availability"):
        r.expect(cfg(suffix).get("cleanup.policy") == "compact", "%s.%s must be compacted and never deleted (cleanup.policy=compact): it is state" % (prefix, suffix))
    tombstones = int(cfg("changelog").get("delete.retention.ms", 86_400_000))
    r.expect(tombstones >= 86_400_000, "%s.changelog keeps tombstones %d ms, less than 24 h: a restore reads on from a store's checkpoint up to 12 h old and needs every tombstone written since (processor/src/restore.rs)" % (prefix, tombstones))

    # Processors (processor_cmd.rs, ARCHITECTURE.md "Crash safety").
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    r.expect(spec.get("podManagementPolicy") == "Parallel", "the processor StatefulSet uses podManagementPolicy Parallel")
    r.expect(proc_env.get("SKUFLOW_INSTANCE") == {"fieldRef": {"fieldPath": "metadata.name"}},
             "SKUFLOW_INSTANCE must be the pod name (downward API): the transactional id derives from it")
    r.expect(pod.get("terminationGracePeriodSeconds", 30) > TRANSACTION_TIMEOUT_S, "terminationGracePeriodSeconds must exceed the %d s transaction timeout" % TRANSACTION_TIMEOUT_S)
    mounts = {m["name"]: m["mountPath"] for m in proc_container.get("volumeMounts", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    data_dir = proc_env.get("SKUFLOW_DATA_DIR", "")
    r.expect(any(data_dir.startswith(mounts[c]) for c in claims if c in mounts), "SKUFLOW_DATA_DIR %r must be on a volumeClaimTemplate's volume" % data_dir)
    r.expect(str(proc_env.get("SKUFLOW_METRICS_ADDR", "127.0.0.1")).startswith("0.0.0.0:"), "SKUFLOW_METRICS_ADDR must listen on the pod's address for probes and Prometheus")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        r.expect((proc_container.get(probe) or {}).get("httpGet", {}).get("path") == path, "processor %s on %s" % (probe, path))
    r.expect(spec.get("replicas", 1) <= p, "the processor StatefulSet has more replicas than partitions")
    r.expect(api_env.get("SKUFLOW_API_BIND", "127.0.0.1:8080").split(":")[0] not in ("127.0.0.1", "localhost"), "SKUFLOW_API_BIND must not be loopback")
    probes = {k: (api_container.get(k) or {}).get("httpGet", {}).get("path") for k in ("livenessProbe", "readinessProbe")}
    r.expect(probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, "API probes on /healthz and /readyz, found %s" % probes)

    # KEDA: the processors' group on the commands topic, never more pods than partitions.
    so = scaled["spec"]
    r.expect(so["scaleTargetRef"].get("kind") == "StatefulSet" and so["scaleTargetRef"]["name"] == sts["metadata"]["name"], "the ScaledObject scales the processor StatefulSet")
    r.expect(so.get("maxReplicaCount") == p, "ScaledObject maxReplicaCount %s must equal the partition count %s" % (so.get("maxReplicaCount"), p))
    r.expect(1 <= so.get("minReplicaCount", 0) <= so.get("maxReplicaCount", 0), "ScaledObject minReplicaCount between 1 (ticks) and maxReplicaCount")
    for trig in so.get("triggers", []):
        if trig["type"] != "kafka":
            continue
        m = trig["metadata"]
        r.expect(m.get("topic") == "%s.commands" % prefix, "the kafka trigger reads %s.commands" % prefix)
        r.expect(m.get("consumerGroup") == group, "the kafka trigger reads group %s (SKUFLOW_GROUP)" % group)
        r.expect(m.get("allowIdleConsumers", "false") == "false", "allowIdleConsumers would scale past the partitions")
        r.expect(m.get("bootstrapServers") in {e for e in expected if ".svc" in e}, "the kafka trigger's bootstrapServers must be the full Service name (KEDA runs in another namespace): %s" % m.get("bootstrapServers"))

    # Selectors: every Service, PDB, NetworkPolicy, ServiceMonitor selects some pods.
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in r.kind("StatefulSet") + r.kind("Deployment") + r.kind("Job")]
    for kind, sel in [("Service", lambda d: d["spec"].get("selector")),
                      ("PodDisruptionBudget", lambda d: d["spec"]["selector"]),
                      ("NetworkPolicy", lambda d: d["spec"]["podSelector"])]:
        for d in r.kind(kind):
            r.expect(any(matches(sel(d), l) for l in pods), "%s %s selects no pod" % (kind, d["metadata"]["name"]))
    services = r.kind("Service")
    for sm in r.kind("ServiceMonitor"):
        chosen = [s for s in services if matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        ports = {pt.get("name") for s in chosen for pt in s["spec"]["ports"]}
        r.expect(chosen and all(e.get("port") in ports for e in sm["spec"]["endpoints"]), "ServiceMonitor %s selects no Service with its ports" % sm["metadata"]["name"])
    for hpa in r.kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        r.expect(any(d["metadata"]["name"] == ref["name"] for d in r.kind(ref["kind"])), "HPA %s targets a missing %s" % (hpa["metadata"]["name"], ref["kind"]))
    return r.errors


def main(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    try:
        errors = check(docs)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        errors = ["a resource lacks what the rules read (%s: %s); its schema check says more" % (type(e).__name__, e)]
    for e in errors:
        print("  rule: " + e)
    if not errors:
        print("  skuflow's rules: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
