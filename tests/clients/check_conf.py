"""Checks every file in conf/ with the program that reads it, or the nearest
thing available here. Run by tests/clients.rs (so by `make test`):

    python check_conf.py CONF_DIR NOMAD_HOLEPUNCH_BINARY WORK_DIR

- every .hcl file parses as HCL2 (python-hcl2, not Nomad's own parser; no
  Nomad runs here), and the job files hold the parts operators rely on
  (system job in every node pool on Linux only, an image variable with no
  default, identity, token file, /health check, telemetry, sidecar
  lifecycle, the minimum Nomad version in the header);
- the environment each job gives the proxy passes `nomad-holepunch --check`;
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
  runs as a non-root user with the labels and port operators look for.

Prints one line per check and exits 1 on the first failure.
"""

import os
import re
import shlex
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
    for name in ("image", "port", "telemetry_port", "allow"):
        if name not in variables:
            fail(f"{path}: no variable {name!r}")
    check_image_variable(path, doc, "image")
    job = block(doc, "job", "holepunch")
    if unquote(job.get("type")) != "system" or unquote(job.get("node_pool")) != "all":
        fail(f'{path}: expected type = "system" and node_pool = "all"')
    check_linux_only(path, job)
    # node_pool came in Nomad 1.6.0 (CHANGELOG-unsupported.md).
    if min_version(path) != "1.6.0":
        fail(f"{path}: node_pool needs Nomad 1.6.0; the header says {min_version(path)}")
    group = block(job, "group", "holepunch")
    network = block(group, "network")
    if block(network, "port", "http").get("static") != "${var.port}":
        fail(f"{path}: the http port is not static = var.port")
    if block(network, "port", "telemetry").get("static") != "${var.telemetry_port}":
        fail(f"{path}: the telemetry port is not static = var.telemetry_port")
    task = block(group, "task", "holepunch")
    if [unquote(p) for p in block(task, "config").get("ports", [])] != ["http", "telemetry"]:
        fail(f"{path}: the docker config must publish the http and telemetry ports")
    identity = block(task, "identity")
    if identity.get("env") is not True or identity.get("file") is not True:
        fail(f"{path}: identity needs env = true and file = true")
    services = {unquote(s.get("name")): s for s in task.get("service", [])}
    service = services.get("holepunch")
    if not service or unquote(service.get("provider")) != "nomad" or "prometheus" not in [
        unquote(t) for t in service.get("tags", [])
    ]:
        fail(f'{path}: the holepunch service needs provider = "nomad" and a "prometheus" tag')
    check = block(service, "check")
    if unquote(check.get("type")) != "http" or unquote(check.get("path")) != "/health":
        fail(f"{path}: the service check must be http on /health")
    telemetry = services.get("holepunch-telemetry")
    if (
        not telemetry
        or unquote(telemetry.get("port")) != "telemetry"
        or [unquote(t) for t in telemetry.get("tags", [])] != ["prometheus", "metrics_path=/metrics"]
    ):
        fail(f"{path}: the holepunch-telemetry service must offer the telemetry port to conf/prometheus-nomad-sd.yml")
    ok(
        f"{path}: system job, node_pool all, Linux only, image without default, Nomad 1.6.0+, "
        "identity env+file, nomad services with /health check and telemetry"
    )

    env = task_env_literals(task)
    if env.get("HOLEPUNCH_TOKEN_FILE") != "${NOMAD_SECRETS_DIR}/nomad_token":
        fail(f"{path}: HOLEPUNCH_TOKEN_FILE must point at the identity's token file")
    if env.get("HOLEPUNCH_TELEMETRY_BIND") != "0.0.0.0:${var.telemetry_port}":
        fail(f"{path}: HOLEPUNCH_TELEMETRY_BIND must listen on the telemetry port")
    env = {k: substitute_vars(v, variables) for k, v in env.items()}
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
    check_image_variable(path, doc, "holepunch_image")
    job = block(doc, "job", "prometheus")
    check_linux_only(path, job)
    # The Task API socket and identity came in Nomad 1.5.0.
    if min_version(path) != "1.5.0":
        fail(f"{path}: the header's minimum Nomad version is {min_version(path)}, expected 1.5.0")
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
    if not re.search(r"^build: setup\n\t\$\(CARGO\) auditable build --release --locked --bin nomad-holepunch$", makefile, re.M):
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
        f"non-root, labels, port 6120, version {version}"
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
        "Nomad 1.6.0 or later",
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
            for name, labels in re.findall(r'"(holepunch_\w+)",\s*"[^"]*",\s*&\[([^\]]*)\]', fh.read())
        }
    if "holepunch_requests_total" not in registered:
        fail("src/telemetry.rs: could not read the registered metrics")
    registered["up"] = {"job", "instance"}
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
                fail(f"{rules_path}: {name} reads {metric}, which is neither `up` nor a metric of src/telemetry.rs")
            if not labels <= registered[metric]:
                fail(f"{rules_path}: {name} matches {metric} on {labels - registered[metric]}, labels it does not have")
        everything = set().union(*(registered[m] for m in matchers))
        if not grouping <= everything:
            fail(f"{rules_path}: {name} groups by {grouping - everything}, labels its metrics do not have")
    for kind in ("up", "holepunch_upstream_errors_total", "holepunch_reload_failures_total"):
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


def main():
    conf, binary, work = sys.argv[1:4]
    root = os.path.dirname(os.path.abspath(conf))
    yamls, texts = {}, []
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
        with open(path, encoding="utf-8") as fh:
            texts.append((path, fh.read()))

    sd = yamls.get("prometheus-nomad-sd.yml")
    check_sd_config(os.path.join(conf, "prometheus-nomad-sd.yml"), sd)
    check_holepunch_job(os.path.join(conf, "holepunch.nomad.hcl"), binary, work)
    check_sidecar_job(os.path.join(conf, "prometheus-sidecar.nomad.hcl"), binary, work, sd)
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
