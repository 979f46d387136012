"""Checks every file in conf/ with the program that reads it, or the nearest
thing available here. Run by tests/clients.rs (so by `make test`):

    python check_conf.py CONF_DIR NOMAD_HOLEPUNCH_BINARY WORK_DIR

- every .hcl file parses as HCL2 (python-hcl2), and the job files hold the
  parts operators rely on (system job in every node pool, identity, token
  file, /health check, sidecar lifecycle);
- the environment each job gives the proxy passes `nomad-holepunch --check`;
- every .yml/.yaml file parses as YAML; conf/prometheus.yml passes
  `promtool check config`; conf/holepunch.yaml passes the binary's own
  `--check -c`;
- the Prometheus configuration inlined in the sidecar job is the same as
  conf/prometheus-nomad-sd.yml;
- the Containerfile (which no container engine here can build) pins its
  bases, builds with `make setup build` as `make test` does, and runs as a
  non-root user with the labels and port operators look for.

Prints one line per check and exits 1 on the first failure.
"""

import json
import os
import re
import subprocess
import sys

import hcl2
import yaml


def unquote(value):
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def block(body, kind, label=None):
    """The one block of `kind` (with `label`, if given) in an HCL body."""
    found = []
    for item in body.get(kind, []):
        if label is None:
            found.append(item)
        else:
            for key, inner in item.items():
                if unquote(key) == label:
                    found.append(inner)
    if len(found) != 1:
        fail(f"expected one {kind} {label or ''} block, found {len(found)}")
    return found[0]


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


def ok(message):
    print(f"ok   {message}")


def load_hcl(path):
    with open(path, encoding="utf-8") as fh:
        try:
            return hcl2.load(fh)
        except Exception as e:  # the parser raises several types
            fail(f"{path}: not valid HCL2: {e}")


def run_check(binary, env, work, label, extra=()):
    """`nomad-holepunch --check` with only `env` (plus a token and a socket path)."""
    token = os.path.join(work, "nomad_token")
    with open(token, "w", encoding="utf-8") as fh:
        fh.write("check-token")
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NOMAD_SECRETS_DIR": work}
    for key, value in env.items():
        full[key] = value.replace("${NOMAD_SECRETS_DIR}", work)
    full.setdefault("HOLEPUNCH_SOCKET_PATH", os.path.join(work, "api.sock"))
    proc = subprocess.run(
        [binary, "--check", *extra], env=full, capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0 or "configuration OK" not in proc.stdout:
        fail(f"{label}: nomad-holepunch --check exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    ok(f"{label}: nomad-holepunch --check accepts it")
    return proc.stdout


def task_env_literals(task):
    """The task's env: a plain block, or the literal KEY = "value" pairs of an
    `env = merge({...}, ...)` expression."""
    env = task.get("env")
    if isinstance(env, list):
        return {k: str(unquote(v)) for k, v in env[0].items() if not k.startswith("__")}
    pairs = re.findall(r'(HOLEPUNCH_[A-Z_]+|RUST_LOG) = \\?"([^"\\]*)\\?"', env or "")
    return {k: v for k, v in pairs if "?" not in v}


def check_holepunch_job(path, binary, work):
    doc = load_hcl(path)
    variables = {unquote(k): v for item in doc.get("variable", []) for k, v in item.items()}
    for name in ("image", "port", "allow"):
        if name not in variables:
            fail(f"{path}: no variable {name!r}")
    job = block(doc, "job", "holepunch")
    if unquote(job.get("type")) != "system" or unquote(job.get("node_pool")) != "all":
        fail(f'{path}: expected type = "system" and node_pool = "all"')
    group = block(job, "group", "holepunch")
    port = block(block(group, "network"), "port", "http")
    if port.get("static") != "${var.port}":
        fail(f"{path}: the http port is not static = var.port")
    task = block(group, "task", "holepunch")
    identity = block(task, "identity")
    if identity.get("env") is not True or identity.get("file") is not True:
        fail(f"{path}: identity needs env = true and file = true")
    service = block(task, "service")
    if unquote(service.get("provider")) != "nomad" or "prometheus" not in [
        unquote(t) for t in service.get("tags", [])
    ]:
        fail(f'{path}: the service needs provider = "nomad" and a "prometheus" tag')
    check = block(service, "check")
    if unquote(check.get("type")) != "http" or unquote(check.get("path")) != "/health":
        fail(f"{path}: the service check must be http on /health")
    ok(f"{path}: system job, node_pool all, identity env+file, nomad service with /health check")

    env = task_env_literals(task)
    if env.get("HOLEPUNCH_TOKEN_FILE") != "${NOMAD_SECRETS_DIR}/nomad_token":
        fail(f"{path}: HOLEPUNCH_TOKEN_FILE must point at the identity's token file")
    env["HOLEPUNCH_PORT"] = str(variables["port"]["default"])
    # Every group the variable's description offers, and its default, must be
    # one the binary knows.
    offered = re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", unquote(variables["allow"]["description"]))
    groups = [g for g in offered if g not in ("HOLEPUNCH_ALLOW_", "GROUP")]
    defaults = [unquote(g) for g in variables["allow"]["default"]]
    for g in groups + defaults:
        env[f"HOLEPUNCH_ALLOW_{g}"] = "true"
    out = run_check(binary, env, work, f"{path} (every group of var.allow on)")
    if "token file" not in out and "nomad_token" not in out:
        fail(f"{path}: --check did not report the token file:\n{out}")


def check_sidecar_job(path, binary, work, sd_config):
    doc = load_hcl(path)
    job = block(doc, "job", "prometheus")
    group = block(job, "group", "prometheus")
    proxy = block(group, "task", "holepunch")
    lifecycle = block(proxy, "lifecycle")
    if unquote(lifecycle.get("hook")) != "prestart" or lifecycle.get("sidecar") is not True:
        fail(f"{path}: the holepunch task must be a prestart sidecar")
    env = task_env_literals(proxy)
    if env.get("HOLEPUNCH_BIND") != "127.0.0.1" or env.get("HOLEPUNCH_ALLOW_SERVICES") != "true":
        fail(f"{path}: the sidecar must bind 127.0.0.1 and allow SERVICES")
    ok(f"{path}: prestart sidecar on 127.0.0.1 allowing SERVICES")
    run_check(binary, env, work, f"{path} (sidecar environment)")

    prometheus = block(group, "task", "prometheus")
    template = block(prometheus, "template")
    data = unquote(template.get("data", ""))
    # python-hcl2 gives the heredoc with its marker and indentation.
    data = re.sub(r"^<<-?EOT\n", "", data)
    data = re.sub(r"\n\s*EOT\s*$", "\n", data)
    try:
        inlined = yaml.safe_load(bytes(data, "utf-8").decode("unicode_escape"))
    except yaml.YAMLError as e:
        fail(f"{path}: the template's Prometheus configuration is not YAML: {e}")
    if inlined != sd_config:
        fail(f"{path}: the template's Prometheus configuration differs from conf/prometheus-nomad-sd.yml")
    ok(f"{path}: its Prometheus configuration is conf/prometheus-nomad-sd.yml")


def check_containerfile(root):
    path = os.path.join(root, "Containerfile")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    if len(froms) != 2:
        fail(f"{path}: expected a build and a run stage, found {froms}")
    if not re.fullmatch(r"docker\.io/library/rust:\d+\.\d+\.\d+-\w+", froms[0]):
        fail(f"{path}: the build stage must use the official Rust image at a full version: {froms[0]}")
    if not re.search(r"@sha256:[0-9a-f]{64}$", froms[1]):
        fail(f"{path}: the run stage must be pinned by digest: {froms[1]}")
    runs = re.findall(r"^RUN (.*)", text, re.M)
    if not any(r.startswith("make setup build") for r in runs):
        fail(f"{path}: the build must run `make setup build`, as make test does: {runs}")
    with open(os.path.join(root, "Makefile"), encoding="utf-8") as fh:
        makefile = fh.read()
    if not re.search(r"^build: setup\n\t\$\(CARGO\) build --release --locked --bin nomad-holepunch$", makefile, re.M):
        fail("Makefile: `make build` is not the release cargo build the Containerfile relies on")
    # make test ends with `$(MAKE) container-build`, which depends on build.
    test_recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M)
    if (
        not test_recipe
        or "$(MAKE) --no-print-directory container-build" not in test_recipe.group(1)
        or not re.search(r"^container-build: build$", makefile, re.M)
    ):
        fail("Makefile: `make test` does not run `make build` (through container-build)")
    user = re.findall(r"^USER (\S+)", text, re.M)
    if not user or user[-1].split(":")[0] in ("0", "root"):
        fail(f"{path}: the image must run as a non-root user: {user}")
    with open(os.path.join(root, "Cargo.toml"), encoding="utf-8") as fh:
        version = re.search(r'^version = "([^"]+)"', fh.read(), re.M).group(1)
    for needle in (
        'org.opencontainers.image.licenses="MPL-2.0"',
        "org.opencontainers.image.source=",
        f'org.opencontainers.image.version="{version}"',
        "EXPOSE 6120",
        'ENTRYPOINT ["/usr/local/bin/nomad-holepunch"]',
    ):
        if needle not in text:
            fail(f"{path}: missing {needle}")
    ok(f"{path}: pinned bases, make setup build, non-root, labels, port 6120, version {version}")


def main():
    conf, binary, work = sys.argv[1:4]
    yamls = {}
    for name in sorted(os.listdir(conf)):
        path = os.path.join(conf, name)
        if name.endswith(".hcl"):
            load_hcl(path)
            ok(f"{path}: parses as HCL2")
        elif name.endswith((".yml", ".yaml")):
            with open(path, encoding="utf-8") as fh:
                try:
                    yamls[name] = yaml.safe_load(fh)
                except yaml.YAMLError as e:
                    fail(f"{path}: not valid YAML: {e}")
            ok(f"{path}: parses as YAML")

    sd = yamls.get("prometheus-nomad-sd.yml")
    if not sd or "nomad_sd_configs" not in json.dumps(sd):
        fail("conf/prometheus-nomad-sd.yml: no nomad_sd_configs")
    check_holepunch_job(os.path.join(conf, "holepunch.nomad.hcl"), binary, work)
    check_sidecar_job(os.path.join(conf, "prometheus-sidecar.nomad.hcl"), binary, work, sd)

    policy = load_hcl(os.path.join(conf, "holepunch-policy.hcl"))
    for kind in ("agent", "node", "plugin", "namespace"):
        if kind not in policy:
            fail(f"conf/holepunch-policy.hcl: no {kind} rule")
    ok("conf/holepunch-policy.hcl: agent, node, plugin and namespace rules")

    proc = subprocess.run(
        ["promtool", "check", "config", os.path.join(conf, "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0:
        fail(f"promtool check config conf/prometheus.yml:\n{proc.stdout}{proc.stderr}")
    ok("conf/prometheus.yml: promtool check config")

    run_check(binary, {}, work, "conf/holepunch.yaml", ("-c", os.path.join(conf, "holepunch.yaml")))
    check_containerfile(os.path.dirname(os.path.abspath(conf)))
    print("conf: all checks passed")


if __name__ == "__main__":
    main()
