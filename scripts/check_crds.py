#!/usr/bin/env python3
"""Offline structural checks of deploy/ that no schema validator can make.

Run by scripts/validate-deploy (after kubernetes-validate, which checks each
Kubernetes object against its schema). This script checks what lies between
files and what the Istio and Envoy Gateway custom resources must say:

* every YAML file under deploy/ (and docker-compose.yml) parses and has no
  duplicate mapping keys (which YAML loaders otherwise resolve silently);
* deploy/kubernetes: kustomization.yaml lists exactly the manifests beside it,
  one namespace throughout; the Deployment runs `serve` with the config
  volume mounted as a directory, probes /healthz and /readyz, the hardened
  security context, every ${VAR} of config.yaml comes from the environment
  and every secretKeyRef from a key of the Secret; Service, HPA and PDB
  point at the Deployment's pods and ports;
* deploy/istio: IstioOperator `spec.meshConfig.extensionProviders` has an
  `envoyExtAuthzGrpc` entry for the Service's FQDN and gRPC port, failing
  closed; the AuthorizationPolicy is `action: CUSTOM` with `provider.name`
  equal to that entry's name, sends every host of the ConfigMap's rules to
  ingress-authz, and exempts /oauth2/* only on hosts whose VirtualService
  sends /oauth2/ to the Service's HTTP port before any other route;
* deploy/envoy-gateway: the SecurityPolicy's `extAuth.grpc.backendRefs` is the
  Service's gRPC port, failing closed, its targets exist, every host of the
  ConfigMap's rules is checked, the /oauth2 route goes to the HTTP port and is
  exempt (its own policy, without extAuth; no other route is), and
  cross-namespace references are allowed by a ReferenceGrant;
* Dockerfile copies every build input that Cargo.toml declares;
  docker-compose.yml's bind mounts and build context exist.

Only the fields these files use are checked, against the field names of the
APIs (Istio mesh config / security / networking, Envoy Gateway v1alpha1,
Gateway API v1): unknown keys at those levels are reported as typos.

Usage: check_crds.py [--root DIR] [--self-test]   (exit 0 all good, 1 problems,
2 usage; --self-test: broken copies of deploy/ must fail with their error)
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

# ---------------------------------------------------------------------------
# Loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class Report:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.errors: list[str] = []
        self.checked: list[str] = []

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def err(self, where: str, msg: str) -> None:
        self.errors.append(f"{where}: {msg}")

    def ok(self, what: str) -> None:
        self.checked.append(what)


def load_docs(rep: Report, path: Path) -> list[dict]:
    """All non-empty documents of a YAML file (each must be a mapping)."""
    try:
        docs = list(yaml.load_all(path.read_text(), Loader=_UniqueKeyLoader))
    except (OSError, yaml.YAMLError) as e:
        rep.err(rep.rel(path), f"cannot load: {e}")
        return []
    out = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            rep.err(rep.rel(path), f"document {i + 1} is not a mapping")
            continue
        out.append(doc)
    return out


def get(obj: Any, dotted: str, default: Any = None) -> Any:
    """obj["a"]["b"][0]... for "a.b.0"; default when any step is missing."""
    cur = obj
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return default
    return cur


def where(rep: Report, path: Path, doc: dict, field: str = "") -> str:
    kind = doc.get("kind", "?")
    name = get(doc, "metadata.name", "?")
    return f"{rep.rel(path)} {kind}/{name}" + (f" {field}" if field else "")


def only_keys(rep: Report, loc: str, obj: Any, allowed: set[str]) -> None:
    """Unknown keys at a level whose API fields are known are typos."""
    if not isinstance(obj, dict):
        rep.err(loc, f"must be a mapping, got {type(obj).__name__}")
        return
    for key in obj:
        if key not in allowed:
            rep.err(loc, f"unknown field `{key}`; expected one of {', '.join(sorted(allowed))}")


def expect_list(rep: Report, loc: str, value: Any, nonempty: bool = True) -> list:
    if not isinstance(value, list) or (nonempty and not value):
        rep.err(loc, "must be a non-empty list" if nonempty else "must be a list")
        return []
    return value


# Field names of the API objects used in deploy/ (from the upstream API
# definitions: istio/api mesh/v1alpha1/config.proto and security/v1beta1/
# authorization_policy.proto; envoyproxy/gateway api/v1alpha1; Gateway API v1).
OBJECT_META = {"name", "namespace", "labels", "annotations"}
ISTIO_EXT_PROVIDER_TYPES = {
    "envoyExtAuthzHttp",
    "envoyExtAuthzGrpc",
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "prometheus",
    "envoyFileAccessLog",
    "envoyHttpAls",
    "envoyTcpAls",
    "envoyOtelAls",
    "sds",
}
ISTIO_EXT_AUTHZ_GRPC = {
    "service",
    "port",
    "timeout",
    "failOpen",
    "clearRouteCache",
    "statusOnError",
    "includeRequestBodyInCheck",
}
ISTIO_AUTHZ_SPEC = {"selector", "targetRef", "targetRefs", "action", "provider", "rules"}
ISTIO_RULE = {"from", "to", "when"}
ISTIO_OPERATION = {
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
}
ISTIO_VS_SPEC = {"hosts", "gateways", "http", "tls", "tcp", "exportTo"}
EG_SECURITY_POLICY_SPEC = {
    "targetRef",
    "targetRefs",
    "targetSelectors",
    "mergeType",
    "apiKeyAuth",
    "cors",
    "csrf",
    "basicAuth",
    "jwt",
    "oidc",
    "extAuth",
    "authorization",
}
EG_EXT_AUTH = {
    "grpc",
    "http",
    "headersToExtAuth",
    "bodyToExtAuth",
    "timeout",
    "failOpen",
    "recomputeRoute",
    "includeRouteMetadata",
    "contextExtensions",
    "statusOnError",
}
EG_GRPC_EXT_AUTH = {"backendRef", "backendRefs", "backendSettings"}
GW_BACKEND_REF = {"group", "kind", "name", "namespace", "port", "weight", "fallback"}
GW_POLICY_TARGET_KINDS = {"Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "TCPRoute"}

# Durations: protobuf JSON (Istio mesh config) and Gateway API.
PROTO_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
GATEWAY_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
# Kubernetes resource quantity (the API server refuses anything else).
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
# A host no manifest or rule names: stands for "any other host".
UNLISTED_HOST = "unlisted-host.invalid"


# ---------------------------------------------------------------------------
# deploy/kubernetes


class Cluster:
    """What the Istio and Envoy Gateway checks need to know about the Service."""

    def __init__(self) -> None:
        self.namespace = "ingress-authz"
        self.service = "ingress-authz"
        self.grpc_port = 9001
        self.http_port = 9002
        self.config: dict | None = None  # config.yaml of the ConfigMap

    def serves(self, host: str) -> bool:
        """Whether a rule (or the fallback) of config.yaml takes `host`;
        a host that none takes is denied 403 no_route."""
        if not isinstance(self.config, dict) or self.config.get("fallback"):
            return True
        host = host.lower()
        for rule in self.config.get("rules") or []:
            pattern = str(rule.get("host", "")) if isinstance(rule, dict) else ""
            kind = rule.get("host_type", "auto") if isinstance(rule, dict) else "auto"
            if kind == "auto":
                kind = "regex" if re.search(r"[()\[\]^$|+?\\]", pattern) else "wildcard" if "*" in pattern else "exact"
            try:
                if kind == "regex" and re.fullmatch(pattern, host, re.IGNORECASE):
                    return True
            except re.error:
                return True  # ingress-authz validate reports it
            if kind == "wildcard" and re.fullmatch(".+".join(map(re.escape, pattern.lower().split("*"))), host):
                return True
            if kind == "exact" and pattern.lower() == host:
                return True
        return False

    def rule_hosts(self) -> list[tuple[str, str]]:
        """A host each rule of config.yaml takes, with the rule's name: the
        hosts a manifest must send to ingress-authz. A regex rule, or the
        fallback, takes hosts no list can name: they are represented by
        UNLISTED_HOST, which only a policy for every host covers."""
        if not isinstance(self.config, dict):
            return []
        out: list[tuple[str, str]] = []
        for i, rule in enumerate(self.config.get("rules") or []):
            pattern = str(rule.get("host", "")) if isinstance(rule, dict) else ""
            kind = rule.get("host_type", "auto") if isinstance(rule, dict) else "auto"
            if kind == "auto":
                kind = "regex" if re.search(r"[()\[\]^$|+?\\]", pattern) else "wildcard" if "*" in pattern else "exact"
            label = f"rules[{i}] (host {pattern!r})"
            if kind == "exact":
                out.append((pattern.lower(), label))
            elif kind == "wildcard":
                out.append((pattern.lower().replace("*", "x"), label))
            else:
                out.append((UNLISTED_HOST, label))
        if self.config.get("fallback"):
            out.append((UNLISTED_HOST, "fallback"))
        return out

    @property
    def fqdn(self) -> str:
        return f"{self.service}.{self.namespace}.svc.cluster.local"


def check_kubernetes(rep: Report, kdir: Path) -> Cluster:
    cluster = Cluster()
    files = sorted(p for p in kdir.glob("*.y*ml") if p.name != "kustomization.yaml")
    by_kind: dict[str, list[tuple[Path, dict]]] = {}
    for path in files:
        for doc in load_docs(rep, path):
            by_kind.setdefault(doc.get("kind", "?"), []).append((path, doc))

    # kustomization.yaml lists exactly the manifests beside it.
    kpath = kdir / "kustomization.yaml"
    kdocs = load_docs(rep, kpath) if kpath.exists() else []
    if not kdocs:
        rep.err(rep.rel(kpath), "missing or empty")
        kust: dict = {}
    else:
        kust = kdocs[0]
        if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
            rep.err(rep.rel(kpath), "must be apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization")
        listed = expect_list(rep, f"{rep.rel(kpath)} resources", kust.get("resources"))
        if len(set(listed)) != len(listed):
            rep.err(rep.rel(kpath), "resources lists a file twice")
        present = {p.name for p in files}
        for name in sorted(set(listed) - present):
            rep.err(rep.rel(kpath), f"resources lists `{name}`, which does not exist")
        for name in sorted(present - set(listed)):
            rep.err(rep.rel(kpath), f"`{name}` is not listed in resources (it would never be applied)")
        if isinstance(kust.get("namespace"), str):
            cluster.namespace = kust["namespace"]
    rep.ok("kubernetes: kustomization.yaml lists every manifest")

    # One namespace throughout.
    for kind, items in by_kind.items():
        for path, doc in items:
            ns = get(doc, "metadata.namespace")
            if kind == "Namespace":
                if get(doc, "metadata.name") != cluster.namespace:
                    rep.err(where(rep, path, doc), f"name must be the kustomization namespace `{cluster.namespace}`")
            elif ns != cluster.namespace:
                rep.err(where(rep, path, doc), f"metadata.namespace must be `{cluster.namespace}`, got {ns!r}")

    def single(kind: str) -> tuple[Path, dict] | tuple[None, None]:
        items = by_kind.get(kind, [])
        if len(items) != 1:
            rep.err(f"{rep.rel(kdir)}", f"expected exactly one {kind}, found {len(items)}")
            return None, None
        return items[0]

    dpath, dep = single("Deployment")
    spath, svc = single("Service")
    cpath, cm = single("ConfigMap")
    _, secret = single("Secret")
    hpath, hpa = single("HorizontalPodAutoscaler")
    ppath, pdb = single("PodDisruptionBudget")
    if dep is None or svc is None:
        return cluster

    pod = get(dep, "spec.template.spec", {})
    pod_labels = get(dep, "spec.template.metadata.labels", {}) or {}
    containers = expect_list(rep, where(rep, dpath, dep, "spec.template.spec.containers"), pod.get("containers"))
    if not containers:
        return cluster
    ctr = containers[0]
    dloc = where(rep, dpath, dep)

    def selects(selector: Any) -> bool:
        return (
            isinstance(selector, dict) and bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())
        )

    if not selects(get(dep, "spec.selector.matchLabels")):
        rep.err(dloc, "spec.selector.matchLabels must match the pod template labels")

    # Command line: serve --config FILE --grpc-addr ...:PORT --http-addr ...:PORT
    args = [str(a) for a in (ctr.get("command") or []) + (ctr.get("args") or [])]
    if not args or args[0] != "serve":
        rep.err(dloc, f"container args must start with `serve`, got {shlex.join(args)!r}")

    def flag(name: str) -> str | None:
        for i, a in enumerate(args):
            if a == name and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
        return None

    config_file = flag("--config")
    grpc_addr, http_addr = flag("--grpc-addr"), flag("--http-addr")
    if not config_file:
        rep.err(dloc, "args lack --config FILE")
    for name, addr in (("--grpc-addr", grpc_addr), ("--http-addr", http_addr)):
        if not addr or not re.fullmatch(r"(0\.0\.0\.0|\[::\]):\d+", addr):
            rep.err(dloc, f"args need {name} 0.0.0.0:PORT (reachable from other pods), got {addr!r}")
    ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports") or []}
    for pname, addr in (("grpc", grpc_addr), ("http", http_addr)):
        if addr and ports.get(pname) != int(addr.rsplit(":", 1)[1]):
            rep.err(dloc, f"containerPort `{pname}` must equal the port of {addr}")

    # Config volume: a ConfigMap mounted as a directory (no subPath) holding the file.
    if config_file and cm is not None:
        cfg_dir, cfg_name = config_file.rsplit("/", 1)
        mounts = [m for m in ctr.get("volumeMounts") or [] if m.get("mountPath") == cfg_dir]
        if len(mounts) != 1:
            rep.err(dloc, f"exactly one volumeMount must be at {cfg_dir} (the --config directory)")
        else:
            mount = mounts[0]
            if "subPath" in mount or "subPathExpr" in mount:
                rep.err(
                    dloc, "the config volumeMount must not use subPath: ConfigMap updates never reach subPath mounts"
                )
            if mount.get("readOnly") is not True:
                rep.err(dloc, "the config volumeMount must be readOnly")
            vol = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), None)
            cm_name = get(vol, "configMap.name")
            if cm_name != get(cm, "metadata.name"):
                rep.err(dloc, f"volume `{mount.get('name')}` must be the ConfigMap `{get(cm, 'metadata.name')}`")
            items = get(vol, "configMap.items")
            key = cfg_name
            if items:
                match = [i for i in items if i.get("path") == cfg_name]
                key = match[0].get("key") if match else None
                if not match:
                    rep.err(dloc, f"configMap items put nothing at {cfg_name}")
            config_text = (cm.get("data") or {}).get(key) if key else None
            if not isinstance(config_text, str):
                rep.err(where(rep, cpath, cm), f"data has no `{key}` for {config_file}")
            else:
                cluster.config = check_config_env(rep, cpath, cm, dep, dpath, ctr, config_text)

    # Secret references resolve.
    secret_keys = (
        set((get(secret, "stringData") or {}).keys()) | set((get(secret, "data") or {}).keys()) if secret else set()
    )
    for env in ctr.get("env") or []:
        ref = get(env, "valueFrom.secretKeyRef")
        if ref:
            if secret is None or ref.get("name") != get(secret, "metadata.name"):
                rep.err(
                    dloc,
                    f"env {env.get('name')}: secretKeyRef names `{ref.get('name')}`, not the Secret of {rep.rel(kdir)}",
                )
            elif ref.get("key") not in secret_keys:
                rep.err(dloc, f"env {env.get('name')}: Secret has no key `{ref.get('key')}`")

    # Probes.
    for probe, path in (("startupProbe", "/readyz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = get(ctr, f"{probe}.httpGet.path")
        port = get(ctr, f"{probe}.httpGet.port")
        if got != path:
            rep.err(dloc, f"{probe} must be httpGet {path}, got {got!r}")
        if port not in ("http", ports.get("http")):
            rep.err(dloc, f"{probe} must probe the http port, got {port!r}")

    # Hardening (readOnlyRootFilesystem: ingress-authz writes nothing).
    psc, csc = pod.get("securityContext") or {}, ctr.get("securityContext") or {}
    for field, want in (
        ("runAsNonRoot", True),
        ("runAsUser", 65532),
        ("readOnlyRootFilesystem", True),
        ("allowPrivilegeEscalation", False),
    ):
        got = csc.get(field, psc.get(field) if field in ("runAsNonRoot", "runAsUser") else None)
        if got != want:
            rep.err(dloc, f"securityContext.{field} must be {want!r}, got {got!r}")
    if get(csc, "capabilities.drop") != ["ALL"]:
        rep.err(dloc, "securityContext.capabilities.drop must be [ALL]")
    if get(csc, "seccompProfile.type", get(psc, "seccompProfile.type")) != "RuntimeDefault":
        rep.err(dloc, "seccompProfile.type must be RuntimeDefault")
    for kind in ("requests", "limits"):
        for res in ("cpu", "memory"):
            q = get(ctr, f"resources.{kind}.{res}")
            if q is None or not QUANTITY.match(str(q)):
                rep.err(dloc, f"resources.{kind}.{res} must be a Kubernetes quantity, got {q!r}")
    ann = get(dep, "spec.template.metadata.annotations", {}) or {}
    if ann.get("prometheus.io/scrape") != "true" or str(ann.get("prometheus.io/port")) != str(ports.get("http")):
        rep.err(dloc, 'pod annotations must have prometheus.io/scrape "true" and prometheus.io/port = the http port')
    rep.ok("kubernetes: Deployment args, config volume, env/Secret refs, probes, hardening")

    # Service.
    sloc = where(rep, spath, svc)
    cluster.service = get(svc, "metadata.name", cluster.service)
    if get(svc, "spec.type", "ClusterIP") != "ClusterIP":
        rep.err(sloc, "spec.type must be ClusterIP")
    if not selects(get(svc, "spec.selector")):
        rep.err(sloc, "spec.selector must select the Deployment's pods")
    sports = {p.get("name"): p for p in get(svc, "spec.ports", []) or []}
    for pname, app_proto in (("grpc", "grpc"), ("http", None)):
        sp = sports.get(pname)
        if sp is None:
            rep.err(sloc, f"needs a port named `{pname}`")
            continue
        if sp.get("targetPort") not in (pname, ports.get(pname)):
            rep.err(sloc, f"port `{pname}` must target the container port `{pname}`")
        if app_proto and sp.get("appProtocol") != app_proto:
            rep.err(sloc, f"port `{pname}` needs appProtocol: {app_proto} (HTTP/2 to the authorizer)")
        setattr(cluster, f"{pname}_port", sp.get("port"))
    rep.ok("kubernetes: Service selects the pods, ports grpc/http")

    if hpa is not None:
        hloc = where(rep, hpath, hpa)
        ref = get(hpa, "spec.scaleTargetRef", {})
        if ref.get("kind") != "Deployment" or ref.get("name") != get(dep, "metadata.name"):
            rep.err(hloc, "scaleTargetRef must be the Deployment")
        lo, hi = get(hpa, "spec.minReplicas", 1), get(hpa, "spec.maxReplicas", 0)
        if not (isinstance(lo, int) and isinstance(hi, int) and 2 <= lo <= hi):
            rep.err(hloc, f"need 2 <= minReplicas <= maxReplicas, got {lo}..{hi}")
    if pdb is not None and not selects(get(pdb, "spec.selector.matchLabels")):
        rep.err(where(rep, ppath, pdb), "spec.selector must select the Deployment's pods")
    rep.ok("kubernetes: HPA targets the Deployment, PDB selects its pods")
    return cluster


def check_config_env(rep: Report, cpath: Path, cm: dict, dep: dict, dpath: Path, ctr: dict, text: str) -> dict | None:
    """config.yaml is valid YAML and each ${VAR} without default is set."""
    try:
        config = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        rep.err(where(rep, cpath, cm, "data.config.yaml"), f"not valid YAML: {e}")
        return None
    if not isinstance(config, dict) or not isinstance(config.get("rules"), list):
        rep.err(where(rep, cpath, cm, "data.config.yaml"), "must be a mapping with `rules:`")
        return None
    env_names = {e.get("name") for e in ctr.get("env") or []}
    if not ctr.get("envFrom"):  # else names come from whole Secrets; cannot tell
        for m in ENV_REF.finditer(text):
            if m.group(2) is None and m.group(1) not in env_names:
                rep.err(
                    where(rep, dpath, dep),
                    f"config.yaml uses ${{{m.group(1)}}} but the container sets no env {m.group(1)}",
                )
    return config


def check_hosts(rep: Report, loc: str, hosts: list, cluster: Cluster) -> None:
    for h in hosts:
        name = str(h).removesuffix(":*")
        if not cluster.serves(name):
            rep.err(
                loc,
                f"host {name!r} matches no rule of the ConfigMap's config.yaml: "
                "ingress-authz would deny it 403 (no_route)",
            )


# ---------------------------------------------------------------------------
# deploy/istio


def istio_match(pattern: str, value: str, fold: bool) -> bool:
    """Istio's string match of hosts and paths: exact, `prefix*`, `*suffix`
    or `*` (hosts compare case-insensitively)."""
    p, v = (pattern.lower(), value.lower()) if fold else (pattern, value)
    if p == "*":
        return True
    if p.startswith("*"):
        return v.endswith(p[1:])
    if p.endswith("*"):
        return v.startswith(p[:-1])
    return p == v


def istio_checks(policies: list[dict], host: str, path: str) -> bool:
    """Whether CUSTOM policies send a request for `host` + `path` to the
    authorizer. A rule with `from`, `when`, ports or methods covers less
    than every request of a host and is not counted."""
    for spec in policies:
        for rule in spec.get("rules") or []:
            if not isinstance(rule, dict) or rule.get("from") or rule.get("when"):
                continue
            tos = rule.get("to")
            if not tos:
                return True
            for to in tos:
                op = get(to, "operation") or {}
                if not isinstance(op, dict) or any(k in op for k in ("ports", "notPorts", "methods", "notMethods")):
                    continue
                if op.get("hosts") and not any(istio_match(str(h), host, True) for h in op["hosts"]):
                    continue
                if any(istio_match(str(h), host, True) for h in op.get("notHosts") or []):
                    continue
                if op.get("paths") and not any(istio_match(str(p), path, False) for p in op["paths"]):
                    continue
                if any(istio_match(str(p), path, False) for p in op.get("notPaths") or []):
                    continue
                return True
    return False


def check_istio(rep: Report, idir: Path, cluster: Cluster) -> None:
    docs: dict[str, list[tuple[Path, dict]]] = {}
    for path in sorted(idir.glob("*.y*ml")):
        for doc in load_docs(rep, path):
            docs.setdefault(doc.get("kind", "?"), []).append((path, doc))
    expected = {
        "IstioOperator": ("install.istio.io/v1alpha1",),
        "AuthorizationPolicy": ("security.istio.io/v1", "security.istio.io/v1beta1"),
        "VirtualService": ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
    }
    for kind, items in docs.items():
        for path, doc in items:
            if kind not in expected:
                rep.err(where(rep, path, doc), f"unexpected kind {kind!r}; expected one of {', '.join(expected)}")
            elif doc.get("apiVersion") not in expected[kind]:
                rep.err(
                    where(rep, path, doc),
                    f"apiVersion must be one of {', '.join(expected[kind])}, got {doc.get('apiVersion')!r}",
                )
            only_keys(rep, where(rep, path, doc, "metadata"), doc.get("metadata") or {}, OBJECT_META)
    for kind in expected:
        if kind not in docs:
            rep.err(rep.rel(idir), f"no {kind}")

    # Extension provider(s).
    grpc_providers: set[str] = set()
    for path, op in docs.get("IstioOperator", []):
        loc = where(rep, path, op, "spec.meshConfig.extensionProviders")
        providers = expect_list(rep, loc, get(op, "spec.meshConfig.extensionProviders"))
        for i, prov in enumerate(providers):
            ploc = f"{loc}[{i}]"
            only_keys(rep, ploc, prov, {"name"} | ISTIO_EXT_PROVIDER_TYPES)
            if not isinstance(prov, dict):
                continue
            types = [k for k in prov if k in ISTIO_EXT_PROVIDER_TYPES]
            if len(types) != 1:
                rep.err(ploc, f"needs exactly one provider type, got {types}")
            if "envoyExtAuthzGrpc" not in prov:
                continue
            g = prov["envoyExtAuthzGrpc"]
            only_keys(rep, f"{ploc}.envoyExtAuthzGrpc", g, ISTIO_EXT_AUTHZ_GRPC)
            if not isinstance(prov.get("name"), str) or not prov["name"]:
                rep.err(ploc, "needs a name")
                continue
            grpc_providers.add(prov["name"])
            if not isinstance(g, dict):
                continue
            if g.get("service") not in (cluster.fqdn, f"{cluster.namespace}/{cluster.fqdn}"):
                rep.err(
                    f"{ploc}.envoyExtAuthzGrpc.service",
                    f"must be {cluster.fqdn} (deploy/kubernetes Service), got {g.get('service')!r}",
                )
            if g.get("port") != cluster.grpc_port:
                rep.err(
                    f"{ploc}.envoyExtAuthzGrpc.port",
                    f"must be the Service's grpc port {cluster.grpc_port}, got {g.get('port')!r}",
                )
            if "timeout" in g and not PROTO_DURATION.match(str(g["timeout"])):
                rep.err(
                    f"{ploc}.envoyExtAuthzGrpc.timeout", f"must be a protobuf duration like 0.5s, got {g['timeout']!r}"
                )
            if g.get("failOpen") is not False:
                rep.err(f"{ploc}.envoyExtAuthzGrpc.failOpen", f"must be false (fail closed), got {g.get('failOpen')!r}")
            if "includeRequestBodyInCheck" in g:
                rep.err(f"{ploc}.envoyExtAuthzGrpc", "includeRequestBodyInCheck: ingress-authz never needs bodies")
    if not grpc_providers:
        rep.err(rep.rel(idir), "no extensionProviders entry with envoyExtAuthzGrpc")
    rep.ok(
        f"istio: extensionProviders envoyExtAuthzGrpc {sorted(grpc_providers)} -> {cluster.fqdn}:{cluster.grpc_port}"
    )

    # AuthorizationPolicy (CUSTOM).
    policies: list[dict] = []
    policy_loc = rep.rel(idir)
    for path, ap in docs.get("AuthorizationPolicy", []):
        loc = where(rep, path, ap)
        spec = ap.get("spec") or {}
        if spec.get("action") == "CUSTOM" and isinstance(spec, dict):
            policies.append(spec)
            policy_loc = loc
        only_keys(rep, f"{loc} spec", spec, ISTIO_AUTHZ_SPEC)
        if spec.get("action") != "CUSTOM":
            rep.err(f"{loc} spec.action", f"must be CUSTOM, got {spec.get('action')!r}")
        only_keys(rep, f"{loc} spec.provider", spec.get("provider") or {}, {"name"})
        pname = get(spec, "provider.name")
        if pname not in grpc_providers:
            rep.err(
                f"{loc} spec.provider.name",
                f"{pname!r} is not an envoyExtAuthzGrpc extension provider of meshconfig.yaml "
                f"({sorted(grpc_providers)})",
            )
        if not (get(spec, "selector.matchLabels") or spec.get("targetRefs") or spec.get("targetRef")):
            rep.err(
                loc,
                "needs spec.selector.matchLabels (or targetRefs): "
                "an unscoped CUSTOM policy sends the whole namespace through the authorizer",
            )
        if "selector" in spec:
            only_keys(rep, f"{loc} spec.selector", spec["selector"], {"matchLabels"})
        excluded = False
        for i, rule in enumerate(expect_list(rep, f"{loc} spec.rules", spec.get("rules"))):
            only_keys(rep, f"{loc} spec.rules[{i}]", rule, ISTIO_RULE)
            for j, to in enumerate(rule.get("to") or [] if isinstance(rule, dict) else []):
                only_keys(rep, f"{loc} spec.rules[{i}].to[{j}]", to, {"operation"})
                op = get(to, "operation") or {}
                only_keys(rep, f"{loc} spec.rules[{i}].to[{j}].operation", op, ISTIO_OPERATION)
                if any(str(p).startswith("/oauth2") for p in op.get("paths") or []):
                    rep.err(
                        f"{loc} spec.rules[{i}].to[{j}].operation.paths", "must not send /oauth2/* to the authorizer"
                    )
                if "/oauth2/*" in (op.get("notPaths") or []):
                    excluded = True
                check_hosts(rep, f"{loc} spec.rules[{i}].to[{j}].operation.hosts", op.get("hosts") or [], cluster)
        if not excluded:
            rep.err(
                f"{loc} spec.rules", "no operation has notPaths: [/oauth2/*]; the login callback must not need a login"
            )
    rep.ok("istio: AuthorizationPolicy action CUSTOM, provider.name matches, /oauth2/* exempt")

    # VirtualService: /oauth2/ to the HTTP port, first.
    oauth_hosts: set[str] = set()  # hosts whose /oauth2/ goes to ingress-authz
    for path, vs in docs.get("VirtualService", []):
        loc = where(rep, path, vs)
        spec = vs.get("spec") or {}
        only_keys(rep, f"{loc} spec", spec, ISTIO_VS_SPEC)
        hosts = expect_list(rep, f"{loc} spec.hosts", spec.get("hosts"))
        check_hosts(rep, f"{loc} spec.hosts", hosts, cluster)
        for h in hosts:
            if not istio_checks(policies, str(h), "/"):
                rep.err(
                    f"{loc} spec.hosts",
                    f"{h!r} is not sent to ingress-authz by the AuthorizationPolicy: it would be served unchecked",
                )
        routes = expect_list(rep, f"{loc} spec.http", spec.get("http"))
        oauth_idx = None
        for i, route in enumerate(routes):
            prefixes = [get(m, "uri.prefix") for m in route.get("match") or []]
            if any(isinstance(p, str) and p.startswith("/oauth2") for p in prefixes):
                oauth_idx = i
                dests = [get(d, "destination") or {} for d in route.get("route") or []]
                if not dests or any(
                    d.get("host") not in (cluster.fqdn, f"{cluster.service}.{cluster.namespace}")
                    or get(d, "port.number") != cluster.http_port
                    for d in dests
                ):
                    rep.err(f"{loc} spec.http[{i}]", f"/oauth2/ must route to {cluster.fqdn} port {cluster.http_port}")
                else:
                    oauth_hosts |= {str(h).lower() for h in hosts}
                break
        if oauth_idx is None:
            rep.err(f"{loc} spec.http", "no route matches uri.prefix /oauth2/")
        else:
            for i, route in enumerate(routes[:oauth_idx]):
                if not route.get("match"):
                    rep.err(
                        f"{loc} spec.http[{i}]", "a catch-all route before /oauth2/ shadows it (routes match in order)"
                    )
    rep.ok(f"istio: VirtualService routes /oauth2/ to {cluster.fqdn}:{cluster.http_port}")

    # Every host of the ConfigMap's rules goes through ingress-authz, and
    # /oauth2/* is exempt only where it goes to ingress-authz itself.
    vs_hosts = [str(h) for _, vs in docs.get("VirtualService", []) for h in get(vs, "spec.hosts") or []]
    samples = [(h, f"the ConfigMap's {label}") for h, label in cluster.rule_hosts()]
    samples += [(h, "a VirtualService host") for h in vs_hosts] + [(UNLISTED_HOST, "a host no file names")]
    for host, what in samples:
        for shown in (host, f"{host}:443"):
            if what != "a host no file names" and not istio_checks(policies, shown, "/"):
                rep.err(
                    f"{policy_loc} spec.rules",
                    f"{shown!r} ({what}) is not sent to ingress-authz: "
                    "the AuthorizationPolicy protects fewer hosts than the ConfigMap's rules name",
                )
            exempt = istio_checks(policies, shown, "/") and not istio_checks(policies, shown, "/oauth2/callback")
            if exempt and host.lower() not in oauth_hosts:
                rep.err(
                    f"{policy_loc} spec.rules",
                    f"/oauth2/* of {shown!r} ({what}) is exempt, but no VirtualService routes its /oauth2/ "
                    "to ingress-authz: the path would reach the application unchecked",
                )
    rep.ok(
        "istio: every host of the ConfigMap's rules is checked; /oauth2/* exempt only where it goes to ingress-authz"
    )


# ---------------------------------------------------------------------------
# deploy/envoy-gateway


def check_envoy_gateway(rep: Report, edir: Path, cluster: Cluster) -> None:
    docs: dict[str, list[tuple[Path, dict]]] = {}
    for path in sorted(edir.glob("*.y*ml")):
        for doc in load_docs(rep, path):
            docs.setdefault(doc.get("kind", "?"), []).append((path, doc))
    expected = {
        "SecurityPolicy": ("gateway.envoyproxy.io/v1alpha1",),
        "HTTPRoute": ("gateway.networking.k8s.io/v1",),
        "ReferenceGrant": ("gateway.networking.k8s.io/v1beta1", "gateway.networking.k8s.io/v1"),
    }
    for kind, items in docs.items():
        for path, doc in items:
            if kind not in expected:
                rep.err(where(rep, path, doc), f"unexpected kind {kind!r}; expected one of {', '.join(expected)}")
            elif doc.get("apiVersion") not in expected[kind]:
                rep.err(
                    where(rep, path, doc),
                    f"apiVersion must be one of {', '.join(expected[kind])}, got {doc.get('apiVersion')!r}",
                )
            only_keys(rep, where(rep, path, doc, "metadata"), doc.get("metadata") or {}, OBJECT_META)
            if not get(doc, "metadata.namespace"):
                rep.err(
                    where(rep, path, doc),
                    "needs metadata.namespace (the references between these objects depend on it)",
                )
    for kind in ("SecurityPolicy", "HTTPRoute"):
        if kind not in docs:
            rep.err(rep.rel(edir), f"no {kind}")

    grants = [g for _, g in docs.get("ReferenceGrant", [])]

    def granted(from_group: str, from_kind: str, from_ns: str, to_ns: str, to_name: str) -> bool:
        for g in grants:
            if get(g, "metadata.namespace") != to_ns:
                continue
            froms = get(g, "spec.from") or []
            tos = get(g, "spec.to") or []
            if any(
                f.get("group") == from_group and f.get("kind") == from_kind and f.get("namespace") == from_ns
                for f in froms
            ) and any(
                t.get("group", "") == "" and t.get("kind") == "Service" and t.get("name", to_name) == to_name
                for t in tos
            ):
                return True
        return False

    def check_backend_ref(loc: str, ref: Any, own_ns: str, port: int, from_group: str, from_kind: str) -> None:
        only_keys(rep, loc, ref, GW_BACKEND_REF)
        if not isinstance(ref, dict):
            return
        if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
            rep.err(loc, 'must reference a core Service (group "", kind Service)')
        ns = ref.get("namespace", own_ns)
        if ref.get("name") != cluster.service or ns != cluster.namespace:
            rep.err(loc, f"must reference Service {cluster.namespace}/{cluster.service}, got {ns}/{ref.get('name')}")
        if ref.get("port") != port:
            rep.err(loc, f"port must be {port}, got {ref.get('port')!r}")
        if ns != own_ns and not granted(from_group, from_kind, own_ns, ns, cluster.service):
            rep.err(
                loc,
                f"references namespace {ns} from {own_ns}: needs a ReferenceGrant in {ns} "
                f"from {from_group}/{from_kind} in {own_ns} to Service {cluster.service}",
            )

    # HTTPRoutes: find the /oauth2 one.
    routes = {(get(r, "metadata.namespace"), get(r, "metadata.name")): (p, r) for p, r in docs.get("HTTPRoute", [])}
    oauth_routes: set[tuple[str, str]] = set()
    for (ns, name), (path, route) in routes.items():
        check_hosts(rep, where(rep, path, route, "spec.hostnames"), get(route, "spec.hostnames") or [], cluster)
        for i, rule in enumerate(get(route, "spec.rules") or []):
            paths = [get(m, "path.value") for m in rule.get("matches") or []]
            if any(isinstance(p, str) and p.rstrip("/") == "/oauth2" for p in paths):
                oauth_routes.add((ns, name))
                for j, ref in enumerate(
                    expect_list(rep, where(rep, path, route, f"spec.rules[{i}].backendRefs"), rule.get("backendRefs"))
                ):
                    check_backend_ref(
                        where(rep, path, route, f"spec.rules[{i}].backendRefs[{j}]"),
                        ref,
                        ns,
                        cluster.http_port,
                        "gateway.networking.k8s.io",
                        "HTTPRoute",
                    )
    if not oauth_routes:
        rep.err(rep.rel(edir), "no HTTPRoute sends PathPrefix /oauth2 to ingress-authz's HTTP port")

    # SecurityPolicy. A route's own policy replaces its Gateway's: one
    # without extAuth exempts the route (only the /oauth2 one may be).
    checked_gateways: set[tuple[str, str]] = set()  # (namespace, name) with an extAuth policy
    checked_routes: set[tuple[str, str]] = set()
    exempt_routes: set[tuple[str, str]] = set()
    for path, sp in docs.get("SecurityPolicy", []):
        loc = where(rep, path, sp)
        own_ns = get(sp, "metadata.namespace")
        spec = sp.get("spec") or {}
        only_keys(rep, f"{loc} spec", spec, EG_SECURITY_POLICY_SPEC)
        targets = spec.get("targetRefs") or ([spec["targetRef"]] if spec.get("targetRef") else [])
        if not targets:
            rep.err(f"{loc} spec", "needs targetRefs")
        ext = spec.get("extAuth")
        for i, t in enumerate(targets):
            tloc = f"{loc} spec.targetRefs[{i}]"
            only_keys(rep, tloc, t, {"group", "kind", "name", "sectionName"})
            if t.get("group") != "gateway.networking.k8s.io" or t.get("kind") not in GW_POLICY_TARGET_KINDS:
                rep.err(tloc, f"must be a gateway.networking.k8s.io {'/'.join(sorted(GW_POLICY_TARGET_KINDS))}")
            key = (own_ns, t.get("name"))
            if t.get("kind") == "Gateway" and isinstance(ext, dict):
                checked_gateways.add(key)
            if t.get("kind") == "HTTPRoute":
                if key not in routes:
                    rep.err(tloc, f"HTTPRoute {own_ns}/{t.get('name')} is not defined in {rep.rel(edir)}")
                if isinstance(ext, dict):
                    checked_routes.add(key)
                    if key in oauth_routes:
                        rep.err(tloc, "targets the /oauth2 route: the login callback must not need a login")
                else:
                    exempt_routes.add(key)
                    if key not in oauth_routes:
                        rep.err(
                            tloc,
                            "a policy without extAuth replaces the Gateway's on this route: "
                            "it would be served unchecked (only the /oauth2 route may be exempt)",
                        )
        if not isinstance(ext, dict):
            if spec.get("authorization") is not None:
                only_keys(rep, f"{loc} spec.authorization", spec["authorization"], {"rules", "defaultAction"})
            if any(t.get("kind") != "HTTPRoute" for t in targets):
                rep.err(f"{loc} spec.extAuth", "missing (only a policy exempting the /oauth2 route may lack it)")
            continue
        only_keys(rep, f"{loc} spec.extAuth", ext, EG_EXT_AUTH)
        if "http" in ext or "grpc" not in ext:
            rep.err(f"{loc} spec.extAuth", "must use grpc (ingress-authz serves ext_authz over gRPC), not http")
            continue
        grpc = ext["grpc"]
        only_keys(rep, f"{loc} spec.extAuth.grpc", grpc, EG_GRPC_EXT_AUTH)
        refs = (grpc.get("backendRefs") or []) if isinstance(grpc, dict) else []
        if not refs:
            rep.err(f"{loc} spec.extAuth.grpc.backendRefs", "must be a non-empty list")
        for j, ref in enumerate(refs):
            check_backend_ref(
                f"{loc} spec.extAuth.grpc.backendRefs[{j}]",
                ref,
                own_ns,
                cluster.grpc_port,
                "gateway.envoyproxy.io",
                "SecurityPolicy",
            )
        if ext.get("failOpen") is True:
            rep.err(f"{loc} spec.extAuth.failOpen", "must not be true (fail closed)")
        if "timeout" in ext and not GATEWAY_DURATION.match(str(ext["timeout"])):
            rep.err(f"{loc} spec.extAuth.timeout", f"must be a Gateway API duration like 500ms, got {ext['timeout']!r}")

    # Which route would serve a request, and whether ingress-authz checks it.
    def parents(route: dict) -> set[tuple[str, str]]:
        own = get(route, "metadata.namespace")
        return {(p.get("namespace", own), p.get("name")) for p in get(route, "spec.parentRefs") or []}

    def host_matches(pattern: str, host: str) -> bool:
        pattern, host = pattern.lower(), host.lower()
        return host.endswith(pattern[1:]) if pattern.startswith("*.") else pattern == host

    def serving(host: str, path: str) -> tuple[str, str] | None:
        best, best_len = None, -1
        for key, (_, route) in routes.items():
            names = get(route, "spec.hostnames") or []
            if names and not any(host_matches(str(n), host) for n in names):
                continue
            for rule in get(route, "spec.rules") or []:
                for m in rule.get("matches") or [{"path": {"value": "/"}}]:
                    prefix = str(get(m, "path.value", "/"))
                    if (path == prefix or path.startswith(prefix.rstrip("/") + "/")) and len(prefix) > best_len:
                        best, best_len = key, len(prefix)
        return best

    def checks(host: str, path: str) -> bool:
        """A request on a route of these files is checked by its own policy
        or its Gateway's; on any other route only a Gateway's policy can."""
        key = serving(host, path)
        if key is not None:
            if key in checked_routes:
                return True
            if key in exempt_routes:
                return False
            return bool(parents(routes[key][1]) & checked_gateways)
        return bool(checked_gateways)

    policy_loc = where(rep, *docs["SecurityPolicy"][0]) if docs.get("SecurityPolicy") else rep.rel(edir)
    for host, label in cluster.rule_hosts():
        if not checks(host, "/"):
            rep.err(
                policy_loc,
                f"{host!r} (the ConfigMap's {label}) is not sent to ingress-authz: "
                "the SecurityPolicy protects fewer hosts than the ConfigMap's rules name",
            )
    for key in sorted(oauth_routes - exempt_routes):
        if parents(routes[key][1]) & checked_gateways:
            rep.err(
                where(rep, *routes[key]),
                "the Gateway's extAuth policy applies to the /oauth2 route: exempt it with a policy of its own "
                "(without extAuth), or the login callback needs a login",
            )
    rep.ok(
        f"envoy-gateway: SecurityPolicy extAuth.grpc -> {cluster.namespace}/{cluster.service}:{cluster.grpc_port}, "
        f"/oauth2 -> :{cluster.http_port} exempt, every ConfigMap host checked, ReferenceGrants"
    )


# ---------------------------------------------------------------------------
# Dockerfile and docker-compose.yml


def check_container_files(rep: Report, root: Path) -> None:
    dockerfile, cargo = root / "Dockerfile", root / "Cargo.toml"
    if dockerfile.exists() and cargo.exists():
        # Sources of COPY lines without --from (the build context).
        sources: set[str] = set()
        for line in re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines():
            words = line.split()
            if words and words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
                sources |= {w.rstrip("/") for w in words[1:-1] if not w.startswith("--")}
        manifest = tomllib.loads(cargo.read_text())
        needed = {"Cargo.toml", "Cargo.lock", "src"}
        if (root / "build.rs").exists() or manifest.get("package", {}).get("build"):
            needed.add(manifest.get("package", {}).get("build", "build.rs"))
            if (root / "proto").is_dir():
                needed.add("proto")
        # Cargo loads every workspace member's manifest and targets.
        for member in manifest.get("workspace", {}).get("members", []):
            if member != ".":
                needed |= {f"{member}/Cargo.toml", f"{member}/src"}
        defaults = {"bench": "benches", "test": "tests", "example": "examples"}
        for section, default_dir in defaults.items():
            for target in manifest.get(section, []):
                needed.add(str(Path(target["path"]).parts[0]) if "path" in target else default_dir)
        if "." not in sources:
            for item in sorted(needed - sources):
                rep.err("Dockerfile", f"the build stage never copies `{item}`, which Cargo.toml/the build needs")
        rep.ok("Dockerfile: COPY covers every build input of Cargo.toml")

    compose = root / "docker-compose.yml"
    for doc in load_docs(rep, compose) if compose.exists() else []:
        for name, svc in (doc.get("services") or {}).items():
            build = svc.get("build")
            ctx = build if isinstance(build, str) else (build or {}).get("context") if build else None
            if ctx and not (root / ctx / "Dockerfile").exists():
                rep.err(f"docker-compose.yml services.{name}.build", f"no Dockerfile in {ctx}")
            for vol in svc.get("volumes") or []:
                src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
                if src.startswith((".", "/")) and not (root / src).exists():
                    rep.err(f"docker-compose.yml services.{name}.volumes", f"bind-mount source {src} does not exist")
        rep.ok("docker-compose.yml: build contexts and bind-mount sources exist")


def run_checks(root: Path) -> tuple[list[str], list[str]]:
    """(errors, what was checked) for the project at `root`."""
    rep = Report(root)
    # Every YAML file parses without duplicate keys.
    for path in sorted((root / "deploy").rglob("*.y*ml")) + [root / "docker-compose.yml"]:
        if path.exists():
            load_docs(rep, path)
    cluster = check_kubernetes(rep, root / "deploy" / "kubernetes")
    check_istio(rep, root / "deploy" / "istio", cluster)
    check_envoy_gateway(rep, root / "deploy" / "envoy-gateway", cluster)
    check_container_files(rep, root)
    # load_docs may report the same file twice (first pass, then per check).
    return list(dict.fromkeys(rep.errors)), rep.checked


def self_test(root: Path) -> int:
    """The checks above catch what they are for: the shipped deploy/ passes,
    and each broken copy of it fails with the error it should."""
    import copy
    import shutil
    import tempfile

    istio_policy = Path("deploy/istio/authorizationpolicy.yaml")
    eg_policy = Path("deploy/envoy-gateway/securitypolicy.yaml")

    def policy_rules(docs: list[dict]) -> None:
        docs[0]["spec"]["rules"] = [{"to": [{"operation": {"hosts": ["demo.example.com"], "notPaths": ["/oauth2/*"]}}]}]

    def oauth2_everywhere(docs: list[dict]) -> None:
        docs[0]["spec"]["rules"] = [{"to": [{"operation": {"notPaths": ["/oauth2/*"]}}]}]

    def route_targeted(docs: list[dict]) -> None:
        for d in docs:
            if d["kind"] == "SecurityPolicy" and "extAuth" in d["spec"]:
                d["spec"]["targetRefs"] = [
                    {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "demo-app"}
                ]

    def no_exemption(docs: list[dict]) -> None:
        docs[:] = [d for d in docs if not (d["kind"] == "SecurityPolicy" and "extAuth" not in d["spec"])]

    cases = [
        ("the shipped files", None, None, None),
        ("an Istio policy for one host", istio_policy, policy_rules, "protects fewer hosts than the ConfigMap"),
        ("/oauth2/* exempt on every host", istio_policy, oauth2_everywhere, "reach the application unchecked"),
        ("a SecurityPolicy on one route", eg_policy, route_targeted, "protects fewer hosts than the ConfigMap"),
        ("no /oauth2 exemption", eg_policy, no_exemption, "applies to the /oauth2 route"),
    ]
    failed = 0
    for name, file, edit, expected in cases:
        with tempfile.TemporaryDirectory() as tmp:
            copy_root = Path(tmp)
            shutil.copytree(root / "deploy", copy_root / "deploy")
            if file is not None and edit is not None:
                docs = [copy.deepcopy(d) for d in yaml.safe_load_all((root / file).read_text()) if d]
                edit(docs)
                (copy_root / file).write_text(yaml.safe_dump_all(docs, sort_keys=False))
            errors, _ = run_checks(copy_root)
        ok = not errors if expected is None else any(expected in e for e in errors)
        print(f"{'ok  ' if ok else 'FAIL'} self-test: {name}" + ("" if ok else f": {errors or 'no error'}"))
        failed += not ok
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--self-test", action="store_true", help="check that broken copies of deploy/ fail")
    args = parser.parse_args()
    root = args.root.resolve()
    if args.self_test:
        return self_test(root)
    errors, checked = run_checks(root)
    if errors:
        for e in errors:
            print(f"ERROR {e}", file=sys.stderr)
        print(f"check_crds: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    for what in checked:
        print(f"ok   {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
