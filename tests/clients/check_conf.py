"""Checks every file in conf/ with the program that reads it, or the nearest
thing available here. Run by tests/clients.rs (so by `make test`):

    python check_conf.py CONF_DIR NOMAD_HOLEPUNCH_BINARY WORK_DIR

- every .hcl file parses as HCL2 (python-hcl2, not Nomad's own parser; no
  Nomad runs here), and every job file (*.nomad.hcl) holds the parts
  operators rely on (system job in every node pool on Linux only, an image
  variable with no default, a named identity with a ttl whose file
  HOLEPUNCH_TOKEN_FILE names, /health and /ready checks, telemetry, sidecar
  lifecycle, the minimum Nomad version in the header); a job file this
  script has no checks for fails;
- every task of every job stops with kill_signal = "SIGTERM", and a task
  running the proxy has a kill_timeout above its grace period (plus
  Pingora's shutdown timeout) and a shutdown_delay; the system jobs have a
  job-level update block valid from their minimum Nomad version, whose
  numbers agree with the alerts: a node's gap during a rolling update
  (docs/upgrades.md) is shorter than the alerts' `for:`;
- the environment each job gives the proxy passes `nomad-holepunch --check`,
  which reports the expiry of the token it finds there, for the system job
  also with every safe default turned on (allow_from, allowed_hosts,
  client_tokens, tls);
- every .yml/.yaml file parses as YAML; conf/prometheus.yml passes
  `promtool check config` and loads conf/holepunch.rules.yml, which passes
  `promtool check rules` and `promtool test rules` with
  conf/holepunch.rules.test.yml, where every alert fires and clears; the
  rules read only `up` and metrics src/telemetry.rs registers, with their
  labels; conf/holepunch.yaml passes the binary's own `--check -c`;
- every nomad_sd_configs entry sets `region`, and the Prometheus
  configuration inlined in the sidecar job is conf/prometheus-nomad-sd.yml
  with the region taken from NOMAD_REGION;
- the ACL advice: the policy has no namespace rule, and every
  `nomad acl policy apply ... -job J NAME` in conf/, the README and docs/
  names the policy after its job;
- every ```hcl block of README.md and docs/*.md parses, and neither they nor
  conf/ write a one-line block with more than one argument (python-hcl2
  accepts `identity { env = true file = true }`; HCL2 does not);
- the Containerfile (which no container engine here can build) pins its
  bases (as build arguments a registry mirror can override), builds with
  `make setup build` as `make test` does, passes REVISION to the binary, and
  runs as a non-root user with the labels and port operators look for, its
  binary also at the Go original's /opt/nomad-holepunch.

Prints one line per check and exits 1 on the first failure.
"""

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time

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


# A one-line block with two or more arguments, such as
# `identity { env = true, file = true }`: HCL2 allows one argument in a
# single-line block. Object expressions (`x = { a = 1, b = 2 }`) are not
# blocks: a block's `{` follows its type and labels, not `=`, `(` or `:`.
ONE_LINE_BLOCK = re.compile(
    r'(?<![=(:,]\s)(?<![=(:,])\b[A-Za-z_][\w-]*(?:\s+"[^"\n]*")*\s*\{([^{}\n]*)\}'
)


def one_line_blocks(text):
    """The one-line blocks of `text` that hold more than one argument."""
    found = []
    for m in ONE_LINE_BLOCK.finditer(text):
        inner = re.sub(r'"(?:[^"\\]|\\.)*"', '""', m.group(1))
        # `name = value`, spaced as HCL is written; a PromQL selector such as
        # up{job="x",instance="y"} (written without spaces) is no block.
        if len(re.findall(r"\b\w+\s+=\s(?![=>])", inner)) > 1:
            found.append(m.group(0))
    return found


def hcl_blocks(markdown):
    """The ```hcl code blocks of a Markdown text, with their line numbers."""
    return [
        (markdown.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(r"^```hcl\n(.*?)^```$", markdown, re.M | re.S)
    ]


def header(path):
    """The comment lines at the top of a file, without their `# `."""
    lines = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            lines.append(line[1:].strip())
    return "\n".join(lines)


def check_image_variable(path, doc, name):
    """`name` has no default (so Nomad refuses the job without -var), and the
    file's usage lines pass it as <your registry>/nomad-holepunch:<version>."""
    variables = {unquote(k): v for item in doc.get("variable", []) for k, v in item.items()}
    if name not in variables:
        fail(f"{path}: no variable {name!r}")
    if "default" in variables[name]:
        fail(f"{path}: variable {name!r} must have no default (the docker driver would pull it from Docker Hub)")
    usage = f"-var {name}=<your registry>/nomad-holepunch:<version>"
    if usage not in header(path):
        fail(f"{path}: the usage lines must show {usage}")


def check_linux_only(path, job):
    """A constraint on ${attr.kernel.name} = linux on the job or a group."""
    places = [job] + [g for item in job.get("group", []) for g in item.values()]
    for place in places:
        for c in place.get("constraint", []):
            if unquote(c.get("attribute")) == "${attr.kernel.name}" and unquote(c.get("value")) == "linux":
                return
    fail(f'{path}: no constraint ${{attr.kernel.name}} = "linux"')


def min_version(path):
    """The minimum Nomad version the file's header states."""
    m = re.search(r"Needs Nomad (\d+\.\d+\.\d+) or later", header(path))
    if not m:
        fail(f"{path}: the header must say `Needs Nomad X.Y.Z or later`")
    return m.group(1)


def substitute_vars(value, variables):
    """`${var.NAME}` replaced by the variable's default, as `nomad job run`
    without -var would."""
    return re.sub(
        r"\$\{var\.(\w+)\}", lambda m: str(variables[m.group(1)]["default"]), value
    )


def hcl_duration(value):
    """Seconds of a Nomad duration such as "2m", "10s" or "1m30s"."""
    text = unquote(value) or ""
    parts = re.findall(r"(\d+)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        fail(f"not a duration: {value!r}")
    return sum(int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def grace_bound(root, conf):
    """The longest the proxy takes to stop after SIGTERM: its grace period
    (startup::DEFAULT_GRACE_SECONDS, or grace_period_seconds of
    conf/holepunch.yaml if larger) plus Pingora's
    graceful_shutdown_timeout_seconds (1 unless the file says)."""
    with open(os.path.join(root, "src", "startup.rs"), encoding="utf-8") as fh:
        m = re.search(r"pub const DEFAULT_GRACE_SECONDS: u64 = (\d+);", fh.read())
    if not m:
        fail("src/startup.rs: DEFAULT_GRACE_SECONDS not found")
    with open(os.path.join(conf, "holepunch.yaml"), encoding="utf-8") as fh:
        settings = yaml.safe_load(fh) or {}
    grace = max(int(m.group(1)), int(settings.get("grace_period_seconds", 0)))
    return grace + int(settings.get("graceful_shutdown_timeout_seconds", 1))


def tasks(job):
    """(group name, task name, task) for every task of a job."""
    return [
        (unquote(gname), unquote(tname), task)
        for gitem in job.get("group", [])
        for gname, group in gitem.items()
        for titem in group.get("task", [])
        for tname, task in titem.items()
    ]


def runs_proxy(name, task):
    """Whether a task runs nomad-holepunch: its name, image or command."""
    config = (task.get("config") or [{}])[0]
    text = name + str(config.get("image", "")) + str(config.get("args", "")) + str(config.get("command", ""))
    return "holepunch" in text.lower()


def check_stopping(path, doc, job, bound):
    """Every task stops with SIGTERM (the exec drivers send SIGINT otherwise,
    which Pingora treats as a fast shutdown); a proxy task waits longer than
    the proxy takes to drain, and has a shutdown_delay."""
    found = 0
    for group, name, task in tasks(job):
        if unquote(task.get("kill_signal")) != "SIGTERM":
            fail(f'{path}: task {name} must set kill_signal = "SIGTERM" (raw_exec and exec send SIGINT by default)')
        if runs_proxy(name, task):
            found += 1
            timeout = hcl_duration(task.get("kill_timeout", '"5s"'))
            if timeout <= bound:
                fail(f"{path}: task {name}: kill_timeout {timeout:g}s is not above the proxy's {bound}s to stop")
            if "shutdown_delay" not in task and unquote(job.get("type")) == "system":
                fail(f"{path}: task {name}: no shutdown_delay")
    if not found:
        fail(f"{path}: no task runs nomad-holepunch")
    ok(f"{path}: every task stops with SIGTERM; the proxy's kill_timeout is above its {bound}s to stop")


def check_update(path, job, timing):
    """A job-level update block (the only one Nomad before 1.11 reads for a
    system job: scheduler_system.go and job_endpoint.go at v1.10.0), valid
    by UpdateStrategy.Validate, with numbers that keep a rolling update
    below the alerts' `for:` (docs/upgrades.md). Returns the gap bound."""
    update = block(job, "update")
    if int(update.get("max_parallel", 0)) < 1:
        fail(f"{path}: update.max_parallel must be 1 or more (0 replaces every node at once)")
    stagger = hcl_duration(update.get("stagger", '"0s"'))
    if stagger <= 0:
        fail(f"{path}: update.stagger must be above 0: before Nomad 1.11 it is what makes the update roll")
    if unquote(update.get("health_check")) != "checks":
        fail(f'{path}: update.health_check must be "checks" (the /ready check decides)')
    mht = hcl_duration(update["min_healthy_time"])
    hd = hcl_duration(update["healthy_deadline"])
    pd = hcl_duration(update["progress_deadline"])
    if not mht < hd < pd:
        fail(f"{path}: update needs min_healthy_time < healthy_deadline < progress_deadline (UpdateStrategy.Validate)")
    for key in ("canary", "auto_promote", "auto_revert"):
        if key in update:
            fail(f"{path}: update.{key} is left to the operator")
    (_, name, task), = [t for t in tasks(job) if runs_proxy(t[1], t[2])]
    config = (task.get("config") or [{}])[0]
    pull = hcl_duration(config["image_pull_timeout"]) if "image" in config else 0
    if "image" in config and "image_pull_timeout" not in config:
        fail(f"{path}: the docker config needs an image_pull_timeout: it bounds the node's gap")
    gap = hcl_duration(task["shutdown_delay"]) + hcl_duration(task["kill_timeout"]) + pull + timing["start"]
    seen = timing["refresh"] + timing["scrape"]
    if gap + seen >= timing["for"]:
        fail(f"{path}: a node's gap ({gap:g}s) plus {seen:g}s until Prometheus sees it reaches the alerts' for: ({timing['for']:g}s)")
    if stagger < gap + seen + timing["evaluation"]:
        fail(f"{path}: update.stagger {stagger:g}s is shorter than the gap, discovery and one rule evaluation ({gap + seen + timing['evaluation']:g}s)")
    if mht < seen + timing["evaluation"]:
        fail(f"{path}: update.min_healthy_time {mht:g}s is shorter than discovery and one rule evaluation")
    checks = [
        unquote(c.get("path"))
        for svc in task.get("service", [])
        for c in svc.get("check", [])
    ]
    if "/ready" not in checks:
        fail(f"{path}: the proxy's service needs a check on /ready, which the update's health waits for")
    ok(
        f"{path}: job-level update block, one node at a time, health from the /ready check; "
        f"a node's gap at most {gap:g}s, +{seen:g}s to be seen, under the alerts' {timing['for']:g}s"
    )
    return gap


def split_top(text, sep=","):
    """`text` split at `sep` outside brackets and quotes."""
    parts, depth, quote, current = [], 0, False, ""
    for i, c in enumerate(text):
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            quote = not quote
        elif not quote and c in "([{":
            depth += 1
        elif not quote and c in ")]}":
            depth -= 1
        if c == sep and depth == 0 and not quote:
            parts.append(current)
            current = ""
        else:
            current += c
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def eval_hcl(expr, variables):
    """The value of the few expression forms the job's env uses: a string
    literal with ${var.X} in it, join(",", var.X), contains(var.X, "Y"),
    and `cond ? a : b` over those."""
    expr = expr.strip()
    m = re.fullmatch(r"(.+?)\s\?\s(.+?)\s:\s(.+)", expr)
    if m:
        return eval_hcl(m.group(2) if eval_hcl(m.group(1), variables) else m.group(3), variables)
    m = re.fullmatch(r"var\.(\w+)", expr)
    if m:
        return variables[m.group(1)]
    m = re.fullmatch(r'join\("([^"]*)",\s*var\.(\w+)\)', expr)
    if m:
        return m.group(1).join(variables[m.group(2)])
    m = re.fullmatch(r'contains\(var\.(\w+),\s*"([^"]*)"\)', expr)
    if m:
        return m.group(2) in variables[m.group(1)]
    m = re.fullmatch(r'"(.*)"', expr)
    if m:
        return re.sub(r"\$\{var\.(\w+)\}", lambda v: str(variables[v.group(1)]), m.group(1))
    fail(f"cannot evaluate the job's env expression {expr!r}")


def job_env(env_expr, variables):
    """The environment an `env = merge({...}, ...)` expression gives, for
    `variables` (a for expression over var.allow opens each group)."""
    inner = re.fullmatch(r"\$\{merge\((.*)\)\}", env_expr, re.S)
    if not inner:
        fail(f"the job's env is not a merge(...): {env_expr[:80]}")
    env = {}
    for obj in split_top(inner.group(1)):
        body = obj.strip()[1:-1].strip()
        m = re.fullmatch(r'for (\w+) in var\.(\w+) : "HOLEPUNCH_ALLOW_\$\{upper\(\1\)\}" => "true"', body)
        if m:
            env.update({f"HOLEPUNCH_ALLOW_{g.upper()}": "true" for g in variables[m.group(2)]})
            continue
        for pair in split_top(body):
            key, _, value = pair.partition(" = ")
            env[key.strip()] = eval_hcl(value, variables)
    return {k: v for k, v in env.items() if v != ""}


def base64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims):
    """A compact JWT with these claims and a dummy signature."""
    header = base64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{base64url(json.dumps(claims).encode())}.{base64url(b'signature')}"


# The exp of the token run_check writes where a job's HOLEPUNCH_TOKEN_FILE
# points: a named identity's token, as Nomad writes it.
CHECK_TOKEN_EXP = int(time.time()) + 43200


def run_check(binary, env, work, label, extra=()):
    """`nomad-holepunch --check` with only `env` (plus a token and a socket
    path). The token: `check-token` in `nomad_token`, or a JWT with an exp
    in the file HOLEPUNCH_TOKEN_FILE names."""
    token = os.path.join(work, "nomad_token")
    with open(token, "w", encoding="utf-8") as fh:
        fh.write("check-token")
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NOMAD_SECRETS_DIR": work}
    for key, value in env.items():
        full[key] = value.replace("${NOMAD_SECRETS_DIR}", work)
    full.setdefault("HOLEPUNCH_SOCKET_PATH", os.path.join(work, "api.sock"))
    if "HOLEPUNCH_TOKEN_FILE" in full:
        with open(full["HOLEPUNCH_TOKEN_FILE"], "w", encoding="utf-8") as fh:
            fh.write(jwt({"nomad_task": "holepunch", "iat": CHECK_TOKEN_EXP - 43200, "exp": CHECK_TOKEN_EXP}))
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


def variable_defaults(variables):
    """Each variable's default, as a Python value."""
    return {
        k: ([unquote(x) for x in v["default"]] if isinstance(v.get("default"), list) else unquote(v.get("default")))
        for k, v in variables.items()
    }



def go_duration(text):
    """Seconds in a Go duration such as 12h, 90m or 1h30m; None if it is not one."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    unit = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, u in parts)


def block_ttl(task, name):
    """The ttl of the identity named `name`, as written."""
    for i in task.get("identity", []):
        if unquote(i.get("name")) == name:
            return i.get("ttl")
    return None


def check_rotating_identity(path, task, env):
    """The workload token comes from a named identity with a ttl, written to
    its file, which HOLEPUNCH_TOKEN_FILE names; the default identity, whose
    token lasts as long as the allocation, is exposed nowhere.

    hashicorp/nomad 2.0.5: a ttl on the default identity is refused
    (nomad/structs/workload_id.go Validate) and its token is written once per
    task start (client/allocrunner/taskrunner/identity_hook.go
    setDefaultToken); a named identity with a ttl is renewed by the client
    (client/widmgr/widmgr.go renew) and written to secrets/nomad_<name>.jwt
    (setAltToken). Returns the identity's name and ttl in seconds."""
    identities = task.get("identity", [])
    named = [i for i in identities if unquote(i.get("name", '"default"')) != "default"]
    default = [i for i in identities if unquote(i.get("name", '"default"')) == "default"]
    for i in default:
        if i.get("env") is True or i.get("file") is True:
            fail(f"{path}: the default identity's token never expires: expose only the named identity's")
    if len(named) != 1:
        fail(f"{path}: expected one named identity with a ttl, found {len(named)}")
    identity = named[0]
    name = unquote(identity["name"])
    ttl = go_duration(unquote(identity.get("ttl")))
    if not ttl or ttl <= 0:
        fail(f"{path}: identity {name!r} needs a ttl, or Nomad never renews it")
    if identity.get("file") is not True:
        fail(f"{path}: identity {name!r} needs file = true: the proxy re-reads the file Nomad rewrites")
    if identity.get("env") is True:
        fail(f"{path}: identity {name!r} must not set env = true: a running task's environment never changes")
    if not [unquote(a) for a in identity.get("aud", [])]:
        fail(f"{path}: identity {name!r} needs an aud (Nomad warns about an identity without one)")
    want = "${NOMAD_SECRETS_DIR}/nomad_" + name + ".jwt"
    if env.get("HOLEPUNCH_TOKEN_FILE") != want:
        fail(f"{path}: HOLEPUNCH_TOKEN_FILE must be {want}, the file Nomad rewrites at each renewal")
    return name, ttl



def check_holepunch_job(path, binary, work, bound, timing, root):
    doc = load_hcl(path)
    variables = {unquote(k): v for item in doc.get("variable", []) for k, v in item.items()}
    for name in (
        "image", "port", "telemetry_port", "allow",
        "allow_from", "allowed_hosts", "client_tokens", "tls", "secrets_path", "host_network",
    ):
        if name not in variables:
            fail(f"{path}: no variable {name!r}")
    # The safe defaults are off unless asked for: the job behaves as before.
    defaults = variable_defaults(variables)
    for name, off in (("allow_from", []), ("allowed_hosts", []), ("client_tokens", False), ("tls", False), ("host_network", "default")):
        if defaults[name] != off:
            fail(f"{path}: variable {name} must default to {off!r} (as without it), not {defaults[name]!r}")
    check_image_variable(path, doc, "image")
    job = block(doc, "job", "holepunch")
    if unquote(job.get("type")) != "system" or unquote(job.get("node_pool")) != "all":
        fail(f'{path}: expected type = "system" and node_pool = "all"')
    check_linux_only(path, job)
    # A named identity with a ttl came in Nomad 1.7.0, node_pool in 1.6.0
    # (CHANGELOG-unsupported.md).
    if min_version(path) != "1.7.0":
        fail(f"{path}: the named identity with a ttl needs Nomad 1.7.0; the header says {min_version(path)}")
    group = block(job, "group", "holepunch")
    network = block(group, "network")
    if block(network, "port", "http").get("static") != "${var.port}":
        fail(f"{path}: the http port is not static = var.port")
    if block(network, "port", "telemetry").get("static") != "${var.telemetry_port}":
        fail(f"{path}: the telemetry port is not static = var.telemetry_port")
    for port in ("http", "telemetry"):
        if block(network, "port", port).get("host_network") != "${var.host_network}":
            fail(f"{path}: port {port} must be published on var.host_network")
    task = block(group, "task", "holepunch")
    if [unquote(p) for p in block(task, "config").get("ports", [])] != ["http", "telemetry"]:
        fail(f"{path}: the docker config must publish the http and telemetry ports")
    identity, ttl = check_rotating_identity(path, task, task_env_literals(task))
    # The comment that justifies the ttl is about this one.
    with open(path, encoding="utf-8") as fh:
        if f'ttl = "{unquote(block_ttl(task, identity))}"' not in fh.read():
            fail(f"{path}: the identity's comment must justify the ttl it sets")
    services = {unquote(s.get("name")): s for s in task.get("service", [])}
    service = services.get("holepunch")
    if not service or unquote(service.get("provider")) != "nomad" or "prometheus" not in [
        unquote(t) for t in service.get("tags", [])
    ]:
        fail(f'{path}: the holepunch service needs provider = "nomad" and a "prometheus" tag')
    checks = {unquote(c.get("path")): c for c in service.get("check", [])}
    if set(checks) != {"/health", "/ready"} or any(unquote(c.get("type")) != "http" for c in checks.values()):
        fail(f"{path}: the service checks must be http on /health and /ready")
    for c in checks.values():
        # Over TLS when TLS is on, and tls_skip_verify only then: Nomad
        # refuses it on its own checks before 1.9.6 (nomad/structs/services.go,
        # validateNomad), so set unconditionally it would refuse the job on
        # 1.7.0-1.9.5; from 1.9.6 checkHTTP honours it.
        if c.get("protocol") != '${var.tls ? "https" : "http"}' or c.get("tls_skip_verify") != "${var.tls}":
            fail(f"{path}: each check must use https and tls_skip_verify only when var.tls is on")
    telemetry = services.get("holepunch-telemetry")
    if (
        not telemetry
        or unquote(telemetry.get("port")) != "telemetry"
        or [unquote(t) for t in telemetry.get("tags", [])] != ["prometheus", "metrics_path=/metrics"]
    ):
        fail(f"{path}: the holepunch-telemetry service must offer the telemetry port to conf/prometheus-nomad-sd.yml")
    ok(
        f"{path}: system job, node_pool all, Linux only, image without default, Nomad 1.7.0+, "
        f"identity {identity!r} with a {ttl:.0f} s ttl in the file HOLEPUNCH_TOKEN_FILE names, "
        "nomad services with /health and /ready checks and telemetry"
    )
    check_stopping(path, doc, job, bound)
    check_update(path, job, timing)

    env = task_env_literals(task)
    if env.get("HOLEPUNCH_TELEMETRY_BIND") != "0.0.0.0:${var.telemetry_port}":
        fail(f"{path}: HOLEPUNCH_TELEMETRY_BIND must listen on the telemetry port")
    # The environment Nomad would give the task with the defaults.
    env = job_env(task["env"], defaults)
    for name in ("HOLEPUNCH_ALLOW_FROM", "HOLEPUNCH_ALLOWED_HOSTS", "HOLEPUNCH_CLIENT_TOKEN_FILE", "HOLEPUNCH_TLS_CERT_FILE"):
        if name in env:
            fail(f"{path}: {name} must be unset by default, is {env[name]!r}")
    # Every group the variable's description offers, and its default, must be
    # one the binary knows.
    offered = re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", unquote(variables["allow"]["description"]))
    groups = [g for g in offered if g not in ("HOLEPUNCH_ALLOW_", "GROUP")]
    every = dict(defaults, allow=groups + defaults["allow"])
    out = run_check(binary, job_env(task["env"], every), work, f"{path} (every group of var.allow on)")
    if f"nomad_{identity}.jwt" not in out:
        fail(f"{path}: --check did not report the token file:\n{out}")
    if f"workload token expiry: exp {CHECK_TOKEN_EXP}, expires in " not in out:
        fail(f"{path}: --check did not report the token's expiry:\n{out}")

    # Every safe default on, with the files the templates would render.
    safe = dict(
        defaults,
        allow_from=["10.0.0.0/8", "fd00::/8"],
        allowed_hosts=["localhost", "*.example.com"],
        client_tokens=True,
        tls=True,
    )
    env = job_env(task["env"], safe)
    templates = [
        d["template"] for d in task.get("dynamic", []) if "template" in d
    ] + [d[k] for d in task.get("dynamic", []) for k in d if unquote(k) == "template"]
    rendered = sorted(unquote(t["content"][0]["destination"]) for t in templates)
    want = ["secrets/client-tokens", 'secrets/tls.${template.value == "cert" ? "crt" : "key"}']
    if rendered != sorted(want):
        fail(f"{path}: the client-token and TLS templates render {rendered}, expected {want}")
    for t in templates:
        data = unquote(t["content"][0]["data"])
        if 'nomadVar \\"${var.secrets_path}\\"' not in data or unquote(t["content"][0].get("change_mode")) != "noop":
            fail(f"{path}: each template must read the Nomad variable var.secrets_path, change_mode noop (the proxy re-reads): {data}")
    # The rendered files belong to the image's user: Nomad sets the owner
    # only when uid/gid are given (client/allocrunner/taskrunner/template/
    # template.go), else the client agent (root) owns a 0400 file the proxy
    # cannot read.
    with open(os.path.join(root, "Containerfile"), encoding="utf-8") as fh:
        user = re.search(r"^USER (\d+):(\d+)$", fh.read(), re.M)
    if not user:
        fail("Containerfile: no numeric USER uid:gid")
    for t in templates:
        content = t["content"][0]
        if (str(content.get("uid")), str(content.get("gid"))) != user.groups():
            fail(f"{path}: template {unquote(content['destination'])} must render as the image's user (uid/gid {':'.join(user.groups())})")
    fixtures = os.path.join(root, "tests", "fixtures", "tls")
    with open(os.path.join(work, "client-tokens"), "w", encoding="utf-8") as fh:
        fh.write("a-client-token\n")
    for src, dst in (("a.crt", "tls.crt"), ("a.key", "tls.key")):
        with open(os.path.join(fixtures, src), encoding="utf-8") as fi, open(os.path.join(work, dst), "w", encoding="utf-8") as fo:
            fo.write(fi.read())
    out = run_check(binary, env, work, f"{path} (every safe default on)")
    for needle in ("10.0.0.0/8", "*.example.com", "client-tokens", "tls.crt"):
        if needle not in out:
            fail(f"{path}: --check with the safe defaults on does not report {needle}:\n{out}")


def check_sidecar_job(path, binary, work, sd_config, bound):
    doc = load_hcl(path)
    check_image_variable(path, doc, "holepunch_image")
    job = block(doc, "job", "prometheus")
    check_linux_only(path, job)
    # The Task API socket came in Nomad 1.5.0, a named identity with a ttl
    # in 1.7.0.
    if min_version(path) != "1.7.0":
        fail(f"{path}: the header's minimum Nomad version is {min_version(path)}, expected 1.7.0")
    group = block(job, "group", "prometheus")
    proxy = block(group, "task", "holepunch")
    lifecycle = block(proxy, "lifecycle")
    if unquote(lifecycle.get("hook")) != "prestart" or lifecycle.get("sidecar") is not True:
        fail(f"{path}: the holepunch task must be a prestart sidecar")
    env = task_env_literals(proxy)
    if env.get("HOLEPUNCH_BIND") != "127.0.0.1" or env.get("HOLEPUNCH_ALLOW_SERVICES") != "true":
        fail(f"{path}: the sidecar must bind 127.0.0.1 and allow SERVICES")
    name, ttl = check_rotating_identity(path, proxy, env)
    ok(f"{path}: prestart sidecar on 127.0.0.1 allowing SERVICES, identity {name!r} with a {ttl:.0f} s ttl")
    check_stopping(path, doc, job, bound)
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
    # The template takes the region from the task's environment, as Nomad's
    # e2e does (e2e/metrics/input/prometheus.hcl); the file names one.
    want_region = '{{ env "NOMAD_REGION" }}'
    entries = sd_entries(inlined)
    if not entries or any(e.get("region") != want_region for e in entries):
        fail(f"{path}: every nomad_sd_configs entry of the template must set region: '{want_region}'")
    for entry, file_entry in zip(entries, sd_entries(sd_config)):
        entry["region"] = file_entry.get("region")
    if inlined != sd_config:
        fail(f"{path}: the template's Prometheus configuration differs from conf/prometheus-nomad-sd.yml")
    ok(f"{path}: its Prometheus configuration is conf/prometheus-nomad-sd.yml, region from NOMAD_REGION")


def check_raw_exec_job(path, binary, work, bound, timing):
    """The raw_exec system job of docs/upgrades.md."""
    doc = load_hcl(path)
    job = block(doc, "job", "holepunch")
    if unquote(job.get("type")) != "system" or unquote(job.get("node_pool")) != "all":
        fail(f'{path}: expected type = "system" and node_pool = "all"')
    check_linux_only(path, job)
    if min_version(path) != "1.7.0":
        fail(f"{path}: the named identity with a ttl needs Nomad 1.7.0; the header says {min_version(path)}")
    (_, _, task), = tasks(job)
    if unquote(task.get("driver")) != "raw_exec":
        fail(f"{path}: the task must use the raw_exec driver")
    name, ttl = check_rotating_identity(path, task, task_env_literals(task))
    # file() reads the entrypoint relative to the job file's directory
    # (jobspec2/parse.go: BaseDir).
    sources = [unquote(t.get("data", "")) for t in task.get("template", [])]
    entry = [m.group(1) for d in sources for m in [re.fullmatch(r'\$\{file\("([^"]+)"\)\}', d or "")] if m]
    if not entry or not os.path.isfile(os.path.join(os.path.dirname(path), entry[0])):
        fail(f"{path}: a template must read the entrypoint with file(), relative to the job file: {sources}")
    check_stopping(path, doc, job, bound)
    check_update(path, job, timing)
    env = task_env_literals(task)
    # raw_exec shares the node's network: both listeners on Nomad's address.
    if env.get("HOLEPUNCH_BIND") != "${NOMAD_IP_http}" or not env.get("HOLEPUNCH_TELEMETRY_BIND", "").startswith(
        "${NOMAD_IP_telemetry}:"
    ):
        fail(f"{path}: under raw_exec both listeners must bind the address Nomad allocated, not 0.0.0.0")
    variables = variable_defaults({unquote(k): v for item in doc.get("variable", []) for k, v in item.items()})
    nomad = {
        "NOMAD_IP_http": "127.0.0.1",
        "NOMAD_IP_telemetry": "127.0.0.1",
        "NOMAD_PORT_http": str(variables["port"]),
        "NOMAD_PORT_telemetry": str(variables["telemetry_port"]),
    }
    env = {k: re.sub(r"\$\{(NOMAD_(?:IP|PORT)_\w+)\}", lambda m: nomad[m.group(1)], v) for k, v in env.items()}
    ok(
        f"{path}: raw_exec system job, Linux only, Nomad 1.7.0+, identity {name!r} with a {ttl:.0f} s ttl, "
        "entrypoint from file(), listeners on Nomad's address"
    )
    run_check(binary, env, work, f"{path} (raw_exec environment)")


def rollout_timing(sd, rules_path):
    """What a rolling update must stay under: the shortest `for:` of the
    alerts a vanished or down proxy fires, discovery's refresh and scrape
    intervals (conf/prometheus-nomad-sd.yml), Prometheus's default rule
    evaluation interval (1m), and a container's start (5 s, generous)."""
    with open(rules_path, encoding="utf-8") as fh:
        rules = {r.get("alert"): r for g in yaml.safe_load(fh)["groups"] for r in g["rules"]}
    fors = [seconds(rules[a].get("for", "0s")) for a in ("HolepunchDown", "HolepunchNodeWithoutProxy") if a in rules]
    if len(fors) != 2:
        fail(f"{rules_path}: HolepunchDown and HolepunchNodeWithoutProxy are both needed")
    return {
        "for": min(fors),
        "refresh": max(seconds(e.get("refresh_interval", "30s")) for e in sd_entries(sd)),
        "scrape": seconds(sd.get("global", {}).get("scrape_interval", "1m")),
        "evaluation": seconds(sd.get("global", {}).get("evaluation_interval", "1m")),
        "start": 5,
    }


def sd_entries(config):
    """Every nomad_sd_configs entry of a Prometheus configuration."""
    return [
        entry
        for job in (config or {}).get("scrape_configs", [])
        for entry in job.get("nomad_sd_configs", [])
    ]


def check_sd_config(path, sd):
    entries = sd_entries(sd)
    if not entries:
        fail(f"{path}: no nomad_sd_configs")
    for entry in entries:
        if not entry.get("region"):
            fail(f"{path}: a nomad_sd_configs entry has no region (Prometheus would send region=global)")
    relabels = [r for job in sd["scrape_configs"] for r in job.get("relabel_configs", [])]
    if not any(
        r.get("regex") == "holepunch-telemetry" and r.get("target_label") == "job" and r.get("replacement") == "holepunch"
        for r in relabels
    ):
        fail(f'{path}: the holepunch-telemetry service must be relabelled job="holepunch" for the rules')
    ok(f"{path}: every nomad_sd_configs entry sets region; the proxy's own metrics get job=holepunch")


def check_policy(path):
    policy = load_hcl(path)
    for kind in ("agent", "node", "plugin"):
        if kind not in policy:
            fail(f"{path}: no {kind} rule")
    # SERVICES needs no rule (acl/acl.go: any workload identity may read
    # service registrations), and read-job on a namespace exposes its job
    # specs: the shipped policy grants none.
    if "namespace" in policy:
        fail(f"{path}: no namespace rule belongs in the shipped policy")
    ok(f"{path}: agent, node and plugin rules, no namespace rule")


def acl_apply_commands(text):
    """Every `nomad acl policy apply` command in a text, continuation lines
    (`\\`, also inside `#` comments) joined, as argument lists."""
    commands = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        at = line.find("nomad acl policy apply")
        if at < 0:
            continue
        command = line[at:]
        j = i
        while command.rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
            command = command.rstrip()[:-1] + " " + re.sub(r"^\s*#?\s*", "", lines[j])
        command = command.split("`")[0]
        commands.append(shlex.split(command)[4:])
    return commands


def check_acl_commands(texts):
    """Policies are keyed by name and hold one job attachment
    (nomad/structs/acl.go, command/acl_policy_apply.go): a command that
    attaches a policy to a job must name the policy after that job, so that
    two jobs never move one policy back and forth."""
    count = 0
    for where, text in texts:
        for args in acl_apply_commands(text):
            flags, positional, k = {}, [], 0
            while k < len(args):
                if args[k].startswith("-") and k + 1 < len(args):
                    flags[args[k].lstrip("-")] = args[k + 1]
                    k += 2
                else:
                    positional.append(args[k])
                    k += 1
            if len(positional) != 2:
                fail(f"{where}: cannot read `nomad acl policy apply {' '.join(args)}`")
            if "job" in flags and positional[0] != flags["job"]:
                fail(
                    f"{where}: `nomad acl policy apply ... -job {flags['job']} {positional[0]}`: "
                    "name the policy after its job"
                )
            count += 1
    if count == 0:
        fail("no `nomad acl policy apply` command found to check")
    ok(f"ACL advice: {count} `nomad acl policy apply` commands, each policy named after its job")


def check_containerfile(root):
    path = os.path.join(root, "Containerfile")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    # The base images are build arguments (a registry mirror can name its
    # copies); their defaults are what is pinned.
    args = dict(re.findall(r"^ARG (\w+)=(\S*)", text, re.M))
    raw_froms = re.findall(r"^FROM (\S+)", text, re.M)
    if raw_froms[:2] != ["${BUILD_IMAGE}", "${RUNTIME_IMAGE}"]:
        fail(f"{path}: the stages must be FROM ${{BUILD_IMAGE}} and FROM ${{RUNTIME_IMAGE}}, build arguments: {raw_froms}")
    first_from = text.index("\nFROM ")
    for name in ("BUILD_IMAGE", "RUNTIME_IMAGE"):
        m = re.search(rf"^ARG {name}=\S+$", text, re.M)
        if not m or m.start() > first_from:
            fail(f"{path}: ARG {name} needs a default, before the first FROM")
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), f) for f in raw_froms]
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
    if not re.search(r"^build: setup-build\n\t\$\(CARGO\) auditable build --release --locked --bin nomad-holepunch$", makefile, re.M):
        fail("Makefile: `make build` is not the release cargo auditable build the Containerfile relies on")
    # The image has no .git: the commit reaches build.rs from REVISION.
    build_stage = text[: text.index("\nFROM ${RUNTIME_IMAGE}")]
    if not re.search(r'^ARG REVISION=""\nENV NOMAD_HOLEPUNCH_COMMIT=\$\{REVISION\}$', build_stage, re.M):
        fail(f"{path}: the build stage must pass ARG REVISION to build.rs as NOMAD_HOLEPUNCH_COMMIT")
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
    # The Go original's path, for jobs that set `command` (its Containerfile:
    # WORKDIR /opt, the binary at /opt/nomad-holepunch). distroless has no
    # shell, so the build stage makes a symlink in a directory of its own,
    # and the run stage copies that directory: COPY keeps the symlinks inside
    # a directory (it follows only the source path itself).
    link = re.search(r"ln -s /usr/local/bin/nomad-holepunch (/[\w-]+)/nomad-holepunch$", text, re.M)
    build_stage, run_stage = text.split("\nFROM ", 2)[1:3]
    if not link or link.group(0) not in build_stage:
        fail(f"{path}: the build stage must link /usr/local/bin/nomad-holepunch as <dir>/nomad-holepunch")
    if f"COPY --from=build {link.group(1)}/ /opt/\n" not in run_stage:
        fail(f"{path}: the run stage must copy {link.group(1)}/ to /opt/, for /opt/nomad-holepunch")
    if not re.search(r"^WORKDIR /opt$", run_stage, re.M):
        fail(f"{path}: WORKDIR /opt, as the original's image, for command = \"./nomad-holepunch\"")
    for needle in (
        'org.opencontainers.image.licenses="MPL-2.0"',
        'org.opencontainers.image.source="${SOURCE}"',
        'org.opencontainers.image.revision="${REVISION}"',
        f'org.opencontainers.image.version="{version}"',
        "EXPOSE 6120",
        'ENTRYPOINT ["/usr/local/bin/nomad-holepunch"]',
    ):
        if needle not in text:
            fail(f"{path}: missing {needle}")
    ok(
        f"{path}: pinned bases as build arguments, make setup build, REVISION into the binary, "
        f"non-root, labels, port 6120, version {version}, /opt/nomad-holepunch linked"
    )


def markdown_texts(root):
    """(path, text) of the README and of every docs/*.md page."""
    docs = os.path.join(root, "docs")
    paths = [os.path.join(root, "README.md")] + sorted(
        os.path.join(docs, n) for n in (os.listdir(docs) if os.path.isdir(docs) else []) if n.endswith(".md")
    )
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            texts.append((path, fh.read()))
    return texts


def check_readme(root, texts):
    """Every ```hcl block of the README and docs/ parses; nothing shows a
    one-line block with several arguments; no HCL grants read-job on every
    namespace; the README shows the image variable and the minimum Nomad
    version."""
    pages = markdown_texts(root)
    path, readme = pages[0]
    if not hcl_blocks(readme):
        fail(f"{path}: no hcl code blocks")
    parsed, count = [], 0
    for where, page in pages:
        for line, code in hcl_blocks(page):
            count += 1
            try:
                parsed.append(hcl2.loads(code))
            except Exception as e:  # the parser raises several types
                fail(f"{where}: the hcl block at line {line} is not valid HCL2: {e}")
    for where, text in [t for t in texts if t[0].endswith(".hcl")] + pages:
        bad = one_line_blocks(text)
        if bad:
            fail(f"{where}: a one-line block holds only one argument in HCL2: {bad}")

    def wildcard_read_job(body):
        if isinstance(body, dict):
            for key, value in body.items():
                if key == "namespace" and any('"*"' in item for item in value):
                    return True
                if wildcard_read_job(value):
                    return True
        elif isinstance(body, list):
            return any(wildcard_read_job(v) for v in body)
        return False

    if any(wildcard_read_job(doc) for doc in parsed):
        fail('README.md or docs/: an hcl block grants namespace "*" (read-job on every job spec)')
    for needle in (
        "-var image=<your registry>/nomad-holepunch:<version>",
        "Nomad 1.7.0 or later",
    ):
        if needle not in readme:
            fail(f"{path}: missing {needle}")
    ok(f"README.md and docs/: all {count} hcl blocks parse (python-hcl2); no one-line block with several arguments there or in conf/")


def promql_selectors(expr):
    """(metric, label names) for every selector of a PromQL expression, and
    the label names of its by/on clauses."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    matchers = {}
    for m in re.finditer(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", expr):
        matchers.setdefault(m.group(1), set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2)))
    grouping = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        grouping.update(x.strip() for x in m.group(1).split(",") if x.strip())
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"\boffset\s+\w+", " ", bare)
    names = set(re.findall(r"\b([A-Za-z_:][\w:]*)\b(?!\s*\()", bare)) - {"and", "or", "unless", "bool"}
    for name in names:
        matchers.setdefault(name, set())
    return matchers, grouping


def seconds(duration):
    return sum(
        int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", str(duration))
    )


def promtool(args):
    proc = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        fail(f"promtool {' '.join(args)}:\n{proc.stdout}{proc.stderr}")
    ok(f"{args[-1]}: promtool {args[0]} {args[1]}")


def check_rules(conf, root, prometheus_yml):
    rules_path = os.path.join(conf, "holepunch.rules.yml")
    test_path = os.path.join(conf, "holepunch.rules.test.yml")
    if "holepunch.rules.yml" not in (prometheus_yml.get("rule_files") or []):
        fail("conf/prometheus.yml: rule_files must load holepunch.rules.yml")
    if "holepunch" not in [j.get("job_name") for j in prometheus_yml.get("scrape_configs", [])]:
        fail('conf/prometheus.yml: no scrape job "holepunch" for the proxy\'s own metrics, which the rules read')
    promtool(["check", "rules", rules_path])

    # The metrics and labels the proxy registers (src/telemetry.rs).
    with open(os.path.join(root, "src", "telemetry.rs"), encoding="utf-8") as fh:
        registered = {
            name: set(re.findall(r'"(\w+)"', labels)) | {"job", "instance"}
            # Registered with labels (`&[...]`) or without.
            for name, labels in re.findall(r'"(holepunch_\w+)",\s*"[^"]*"(?:,\s*&\[([^\]]*)\])?', fh.read())
        }
    if "holepunch_requests_total" not in registered:
        fail("src/telemetry.rs: could not read the registered metrics")
    registered["up"] = {"job", "instance"}
    # The Nomad servers' count of live clients (nomad/heartbeat.go,
    # heartbeatStats; the hostname as the `host` label: command/agent/
    # command.go, setupTelemetry), from the servers' own scrape job.
    registered["nomad_nomad_heartbeat_active"] = {"job", "instance", "host"}
    if "nomad-servers" not in [j.get("job_name") for j in prometheus_yml.get("scrape_configs", [])]:
        fail("conf/prometheus.yml: no scrape job nomad-servers, for HolepunchNodeWithoutProxy")
    with open(rules_path, encoding="utf-8") as fh:
        rules = [r for g in yaml.safe_load(fh)["groups"] for r in g["rules"]]
    alerts = []
    for rule in rules:
        name = rule.get("alert")
        if not name:
            fail(f"{rules_path}: a recording rule; only alerts belong here: {rule}")
        alerts.append(name)
        notes = rule.get("annotations") or {}
        if not notes.get("summary") or len(notes.get("description", "")) < 80:
            fail(f"{rules_path}: {name} needs a summary and a description that says what to check")
        matchers, grouping = promql_selectors(rule["expr"])
        for metric, labels in matchers.items():
            if metric not in registered:
                fail(f"{rules_path}: {name} reads {metric}, which is neither `up`, a Nomad metric named here, nor a metric of src/telemetry.rs")
            if not labels <= registered[metric]:
                fail(f"{rules_path}: {name} matches {metric} on {labels - registered[metric]}, labels it does not have")
        everything = set().union(*(registered[m] for m in matchers))
        if not grouping <= everything:
            fail(f"{rules_path}: {name} groups by {grouping - everything}, labels its metrics do not have")
    for kind in (
        "up",
        "holepunch_upstream_errors_total",
        "holepunch_reload_failures_total",
        "holepunch_workload_token_expiry_timestamp_seconds",
        "nomad_nomad_heartbeat_active",
    ):
        if not any(kind in promql_selectors(r["expr"])[0] for r in rules):
            fail(f"{rules_path}: no alert reads {kind}")

    # Each alert fires in a test, and clears later in the same test.
    with open(test_path, encoding="utf-8") as fh:
        tests = yaml.safe_load(fh)
    if tests.get("rule_files") != ["holepunch.rules.yml"]:
        fail(f"{test_path}: rule_files must be [holepunch.rules.yml]")
    for name in alerts:
        covered = False
        for test in tests["tests"]:
            cases = [c for c in test.get("alert_rule_test", []) if c["alertname"] == name]
            fired = [seconds(c["eval_time"]) for c in cases if c.get("exp_alerts")]
            cleared = [seconds(c["eval_time"]) for c in cases if not c.get("exp_alerts")]
            if fired and any(t > min(fired) for t in cleared):
                covered = True
        if not covered:
            fail(f"{test_path}: {name} is not tested both firing and, later, cleared")
    promtool(["test", "rules", test_path])
    ok(f"{rules_path}: {len(alerts)} alerts on up and the proxy's own metrics, each firing and clearing in {test_path}")


def check_dashboards(path):
    """Every Grafana dashboard parses as JSON and takes its data source from
    a variable. Its queries run against a real Prometheus in
    tests/integration/clients.rs."""
    import json

    names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
    if not names or len(names) != len(os.listdir(path)):
        fail(f"{path}: expected only Grafana dashboards (.json), found {os.listdir(path)}")
    for name in names:
        with open(os.path.join(path, name), encoding="utf-8") as fh:
            try:
                dashboard = json.load(fh)
            except ValueError as e:
                fail(f"{path}/{name}: not JSON: {e}")
        variables = dashboard.get("templating", {}).get("list", [])
        if not variables or variables[0].get("type") != "datasource" or variables[0].get("query") != "prometheus":
            fail(f"{path}/{name}: the first variable must be a Prometheus data source")
        ok(f"{path}/{name}: Grafana dashboard, {len(dashboard.get('panels', []))} panels, data source from a variable")


def main():
    conf, binary, work = sys.argv[1:4]
    root = os.path.dirname(os.path.abspath(conf))
    yamls, texts = {}, []
    for name in sorted(os.listdir(conf)):
        path = os.path.join(conf, name)
        if os.path.isdir(path):
            if name != "grafana":
                fail(f"{path}: a directory this script does not check")
            check_dashboards(path)
            continue
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
        with open(path, encoding="utf-8") as fh:
            texts.append((path, fh.read()))

    sd = yamls.get("prometheus-nomad-sd.yml")
    check_sd_config(os.path.join(conf, "prometheus-nomad-sd.yml"), sd)
    bound = grace_bound(root, conf)
    timing = rollout_timing(sd, os.path.join(conf, "holepunch.rules.yml"))
    jobs = {
        "holepunch.nomad.hcl": lambda p: check_holepunch_job(p, binary, work, bound, timing, root),
        "prometheus-sidecar.nomad.hcl": lambda p: check_sidecar_job(p, binary, work, sd, bound),
        "holepunch-raw-exec.nomad.hcl": lambda p: check_raw_exec_job(p, binary, work, bound, timing),
    }
    for name in sorted(os.listdir(conf)):
        if name.endswith(".nomad.hcl"):
            if name not in jobs:
                fail(f"conf/{name}: a job file tests/clients/check_conf.py has no checks for")
            jobs[name](os.path.join(conf, name))
    ok(f"every job file in conf/ checked: {', '.join(sorted(jobs))}")
    check_policy(os.path.join(conf, "holepunch-policy.hcl"))
    check_acl_commands(texts + markdown_texts(root))
    check_readme(root, texts)

    proc = subprocess.run(
        ["promtool", "check", "config", os.path.join(conf, "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0:
        fail(f"promtool check config conf/prometheus.yml:\n{proc.stdout}{proc.stderr}")
    ok("conf/prometheus.yml: promtool check config")
    check_rules(conf, root, yamls["prometheus.yml"])

    run_check(binary, {}, work, "conf/holepunch.yaml", ("-c", os.path.join(conf, "holepunch.yaml")))
    check_containerfile(root)
    print("conf: all checks passed")


if __name__ == "__main__":
    main()
