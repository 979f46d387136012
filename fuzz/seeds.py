#!/usr/bin/env python3
"""Writes the seeds of each fuzz target (fuzz/seeds/<target>/), drawn from
the cases of the proxy's unit and property tests. The seeds are committed
and kept as they are; `make fuzz` starts from them, the corpus it grew
(fuzz/corpus/<target>/, minimised) and the regressions, and the tests
replay all three. Each file's name is a hash of its bytes, so running this
again adds nothing twice."""
import hashlib
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- guard_header: src/guard.rs tests -------------------------------------
for h in [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\n\n\r\n\r\nG",
    b"GET /v1/service/a b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/metrics?a=b c HTTP/1.1\r\n\r\n",
    b"GET /v1/me\x01trics HTTP/1.1\r\n\r\n",
    b"GET /v1/me\x7ftrics HTTP/1.1\r\n\r\n",
    b"GET /v1/me\ttrics HTTP/1.1\r\n\r\n",
    b"GET /v1/metrics  HTTP/1.1\r\n\r\n",
    b"GET  /v1/metrics HTTP/1.1\r\n\r\n",
    b"GET /v1/m\rx HTTP/1.1\n\n",
    b"GET /v1/metrics#x HTTP/1.1\r\n\r\n",
    b"GET /v1/metrics?a=b#x HTTP/1.1\r\n\r\n",
    b"GET /v1/service/<a> HTTP/1.1\r\n\r\n",
    b'GET /v1/metrics?q="a" HTTP/1.1\r\n\r\n',
    b"GET /v1/metrics?q=<a> HTTP/1.1\r\n\r\n",
    b"GET /v1/../b<c> HTTP/1.1\r\n\r\n",
    b"GET /v1/metrics HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET /v1/metrics?q={a}|[b]^`c` HTTP/1.1\r\n\r\n",
    b"GET /v1/metrics/../x HTTP/1.1\r\n\r\n",
    b"GET /v1/metrics\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /v1/service/caf\xc3\xa9 HTTP/1.1\r\n\r\n",
    b"GET /v1/service/caf%C3%A9 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET http://127.0.0.1:6120/v1/metrics?format=prometheus HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"HEAD /v1/agent/health HTTP/1.0\r\nConnection: close\r\n\r\n",
    b"POST /v1/jobs HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /v1/metrics HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"M-SEARCH * HTTP/1.1\r\n\r\n",
    b"GET /v1/metrics HTTP/1.1\r\nX: \x80\r\n\r\n",
]:
    write("guard_header", h)

# ---- request_target: src/target.rs tests ------------------------------------------
for t in [
    "/v1/metrics?format=prometheus", "/", "/v1/node/abc/", "/v1/service/web;x=1",
    "/v1/node/..;/x", "/v1/m%65trics", "/v1/job/a%2541", "/v1/job/a%25",
    "/v1/service/a%20b", "/v1/service/a%1fb", "/v1/service/caf%C3%A9",
    "/v1/nodes?index=5&wait=10s", "/v1/nodes?a=../..//%2f", "/v1/nodes?",
    "/v1/nodes?a#b", "/v1/nodes?a b", "/v1/nodes?a\x01", "", "*", "v1/metrics",
    "nomad.example:4646", "//v1/metrics", "/v1//metrics", "/v1/metrics/../agent/self",
    "/v1/./metrics", "/v1/metrics/..", "/v1/metrics/.", "/./v1/metrics",
    "/v1/metrics/%2e%2e/agent/self", "/v1/metrics/.%2e/agent/self",
    "/v1/metrics%2f..%2fagent%2fself", "/v1/metrics%5c..%5cagent",
    "/v1/node/%252e%252e/agent/self", "/v1/node/x%252Fy", "/v1/node/x%2500",
    "/v1/metrics\\..\\agent\\self", "/v1/metrics%00", "/v1/metrics%7f", "/v1/metrics%",
    "/v1/metrics%2", "/v1/metrics%zz", "/v1/metrics%%32%65", "/v1/metrics#frag",
    "/v1/metrics x", "/v1/metrics\u00e9", "/v1/{metrics}", "http://", "http:///v1/metrics",
    "http://host", "http://host?x=1", "http://user@host/v1/metrics",
    "http://host%2f/v1/metrics", "ftp://host/v1/metrics", "http://host/v1/../agent/self",
    "/v1/metrics ?a", "/v1/metrics#?a", "/v1/metrics? a", "/v1/metrics??a?",
    "HTTP://127.0.0.1:6120/v1/metrics?format=prometheus", "https://[::1]/v1/agent/health",
    "/v1/node/%25%41", "/v1/plugin/csi/ebs", "/v1/status/leader",
]:
    write("request_target", t)


# ---- decide: src/head.rs tests, tests/path_rules.rs -----------------------
def switches(groups=(0, 1), all_=False, from_=False, hosts=False, region=False, client=1):
    bits = 0
    for g in groups:
        bits |= 1 << g
    bits |= (all_ << 11) | (from_ << 12) | (hosts << 13) | (region << 14)
    return struct.pack("<H", bits) + bytes([client])


def req(line, *headers):
    return "\n".join([line, *headers]).encode()


AGENT_HOST = 5
every = tuple(range(11))
for sw, r in [
    (switches(), req("GET /v1/metrics?format=prometheus", "Host: 10.0.0.5:6120")),
    (switches(), req("GET /v1/metrics")),
    (switches(), req("GET /v1/metrics", "Origin: https://evil.example")),
    (switches(all_=True), req("POST /v1/jobs", "Sec-Fetch-Site: cross-site")),
    (switches(), req("GET /v1/metrics", "Sec-Fetch-Site: none")),
    (switches(), req("GET /health", "Origin: x")),
    (switches(), req("GET /v1/metrics", "Content-Length: 00001")),
    (switches(), req("GET /v1/metrics", "Content-Length: 0", "Content-Length: 0")),
    (switches(), req("GET /v1/metrics", "Transfer-Encoding: chunked")),
    (switches(), req("GET /v1/metrics", "Upgrade: websocket", "Connection: Upgrade")),
    (switches(all_=True), req("POST /v1/metrics", "Content-Length: 10")),
    (switches(all_=True), req("GET /v1/client/allocation/x/exec", "Upgrade: websocket")),
    (switches(hosts=True), req("GET /v1/metrics", "Host: NOMAD.example:6120")),
    (switches(hosts=True), req("GET /v1/metrics", "Host: b.a.nodes.example:1")),
    (switches(hosts=True), req("GET /v1/metrics", "Host: [::1]:6120")),
    (switches(hosts=True), req("GET /v1/metrics", "Host: nodes.example")),
    (switches(hosts=True), req("GET /v1/metrics", "Host: 2130706433x")),
    (switches(hosts=True), req("GET http://evil.example/v1/metrics", "Host: localhost")),
    (switches(hosts=True), req("GET http://10.0.0.5:6120/v1/metrics", "Host: localhost")),
    (switches(), req("GET /v1/metrics", "Host: localhost", "Host: localhost")),
    (switches(from_=True, client=1), req("GET /v1/metrics")),
    (switches(from_=True, client=0), req("GET /v1/metrics")),
    (switches(from_=True, client=2), req("GET /v1/nodes")),
    (switches(from_=True, client=4), req("GET /ready")),
    (switches(region=True), req("GET /v1/metrics?region=global")),
    (switches(region=True), req("GET /v1/metrics?reg%69on=global")),
    (switches(region=True), req("GET /v1/metrics?region=europe&region=asia")),
    (switches(region=True), req("GET /v1/metrics?region=asia;x=1")),
    (switches(region=True), req("GET /v1/metrics?region=as%zzia")),
    (switches(groups=(0, 1, AGENT_HOST)), req("GET /v1/agent/host?node_id=abc")),
    (switches(groups=(0, 1, AGENT_HOST)), req("GET /v1/agent/host?x=1&n%6fde_id=abc")),
    (switches(groups=every), req("GET /v1/agent/health?server_id=s1")),
    (switches(groups=every), req("GET /v1/node/abc/allocations")),
    (switches(groups=every), req("HEAD /v1/plugin/csi/ebs")),
    (switches(groups=every), req("GET /v1/node/pools")),
    (switches(groups=every), req("GET /v1/agent/schedulers/config")),
    (switches(groups=()), req("GET /v1/service/web")),
    (switches(groups=every), req("DELETE /v1/service/web")),
    (switches(groups=every), req("GET /v1/node/%252e%252e/agent/self")),
    (switches(groups=every), req("GET HTTP://h:1/v1/status/peers")),
    (switches(groups=every, all_=True), req("PUT /v1/var/a", "Content-Length: 5")),
    (switches(groups=every), req("GET /v1/acl/token/onetime")),
]:
    write("decide", sw + r)

# ---- query: src/head.rs, src/coalesce.rs tests ----------------------------
for q in [
    "a=1&&b&c=%41+B&d;e=1&f=%g0&=x&g=h=i", "region=global", "reg%69on=global",
    "region=glo%62al", "region=a+b", "region=europe&region=asia", "region=europe", "region=",
    "format=prometheus", "region=asia;x=1", "region=as%zzia", "regions=asia", "node_id=abc",
    "server_id=s1", "x=1&n%6fde_id=abc", "format=prometheus\ntext/plain",
    "format=prometheus&junk=1\ntext/plain", "junk=2&format=prometheus\ntext/plain",
    "format=prom%65theus\ntext/plain", "%66ormat=prometheus\ntext/plain",
    "format=prometheus&format=json\ntext/plain", "format=prometheus&&&\ntext/plain",
    "x;y=1&format=prometheus\ntext/plain", "bad=%zz&format=prometheus\ntext/plain",
    "region=global&index=7&wait=5m&format=prometheus&pretty\ntext/plain",
    "format=json&format=prometheus\ntext/plain", "format=prometheus;\ntext/plain",
    "format=prometheus+\ntext/plain", "format=Prometheus\ntext/plain",
    "format=%zzprometheus", "formats=prometheus", "format=prometheus\ntext/plain;q=1",
    "format=prometheus\n", "pretty=0\n*/*", "pretty=%30&pretty=1", "pretty", "pretty=1",
    "pretty=false", "pretty=", "pretty=1&pretty=0", "format=prometheus&pretty\ntext/plain",
    "format=prometheus" + "&" * 63 + "\ntext/plain", "format=prometheus" + "&" * 64 + "\ntext/plain",
    "index=5&wait=1s",
]:
    write("query", q)

# ---- config_values: src/config.rs, cidr.rs, head.rs tests -----------------
DUR, SIZE, BOOL, ADDR, HOSTS, RATE, PRINTED, VAR = range(8)
for which, v in (
    [(DUR, d) for d in ["10s", "5m40s", "1.5s", "500ms", "340s", "1h", "1h30m", "300us",
                         "300\u00b5s", "2562047h47m16.854775807s", "0.5m", ".5s", "5.s", "0",
                         "-1s", "+1s", "1", "1e3s", "1.000000001s", "100ns"]]
    + [(SIZE, s) for s in ["1MiB", "512KiB", "2MB", "1048576", "1kB", "0", "5GiB", "18446744073709551615",
                           "1 MiB", "+1", "1mb"]]
    + [(BOOL, b) for b in ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE",
                           "false", "False", "yes", "tRUE", ""]]
    + [(ADDR, a) for a in ["10.0.0.0/8, 192.0.2.7,fd00::/8, ::1\n\x0a\x01\x02\x03",
                           "127.0.0.1\n\x7f\x00\x00\x02", "0.0.0.0/0", "::/0",
                           "192.0.2.128/25\n\xc0\x00\x02\x7f", "2001:db8::/127",
                           "10.0.0.1/8, bogus, 10.0.0.0/33, ::/129, , 1.2.3.4/+8, 1.2.3/24",
                           "::ffff:10.0.0.0/104", "::ffff:10.1.2.3"]]
    + [(HOSTS, h) for h in ["nomad.example.com, *.nodes.example\nnomad.example:6120",
                            "a.example, *.b.example , c\n[::1]:6120",
                            "A.example,*.B.example\nLOCALHOST",
                            "a.example:80, http://x, *, *.x.*, , a_b\nevil.example",
                            "x\nb.a.nodes.example:1", "x\n2130706433x", "x\n[::1"]]
    + [(RATE, r) for r in ["20/s", "600/m", "10000/h", "0/s", "+5/s", "5/d", "4294967295/h",
                           "4294967296/s", "1/s/s"]]
    + [(PRINTED, struct.pack("<QI", s, n)) for s, n in [(340, 0), (1, 500_000_000), (0, 1), (3600, 1),
                                                         (9_223_372_035, 999_999_999), (86400 * 365, 123)]]
):
    write("config_values", bytes([which]) + (v.encode() if isinstance(v, str) else v))
for index in range(38):
    for value in [b"10s", b"true", b"127.0.0.1:6121", b"\xff\xfe"]:
        write("config_values", bytes([VAR, index]) + value)

# ---- client_tokens: src/client_auth.rs tests -------------------------------
for f in [b"# scrapers\nalpha\n\n  beta  \r\n#gamma\n", b"\n# nothing\n",
          b"ok\nnot ok\n# c\nt\xc3\xb6k\nfine\n", b"alpha\n", b"beta\nga mma\ndelta\n", b"",
          b"\n# all revoked\n", b"not a token\n", b"bad token\ngood\n", b"a\x7fa\nb\x0bb\n\x0ctok\x0c"]:
    write("client_tokens", f)

# ---- watched_file: src/files.rs tests --------------------------------------
for kind in range(7):
    for cap, body in [(8, b"12345678"), (8, b"123456789"), (8, b""), (65535, b"eyJ.eyJ.sig\n"),
                      (0, b"x")]:
        write("watched_file", bytes([kind]) + struct.pack("<H", cap) + body)


# ---- jwt_exp: src/claims.rs tests ------------------------------------------
def payload(p):
    write("jwt_exp", b"\x00" + (p.encode() if isinstance(p, str) else p))


for p in [
    '{"nomad_namespace":"default","nomad_job_id":"holepunch","nomad_task":"holepunch","sub":"global:default:holepunch","aud":["nomadproject.io"],"exp":1767268800,"nbf":1767225600,"iat":1767225600,"jti":"e8b7f2a4"}',
    '{"nomad_task":"t","iat":5,"nbf":5}', '{"extra_claims":{"exp":5}}', '{"a":[{"exp":5}],"b":"\\"exp\\":5"}',
    '{"a":{"b":{"c":[1,2,{"exp":[]}]}},"exp":7}', '{"exp":{"exp":5}}', '{"e\\u0078p":8}',
    '{"\\u0065\\u0058\\u0050":8}', '{"EXP":9}', '{"IAT":3}', '{"exp":1,"exp":2}', '{"exp":1,"EXP":2}',
    '{"exp":1,"exp":null}', '{"exp":null,"exp":4}', '{"exp":"1","exp":2}', '{"exp":2,"iat":"x"}',
    '{"exp":1.9}', '{"exp":-1.9}', '{"exp":1e3}', '{"exp":17672256E-1}', '{"exp":1e-400}', '{"exp":-0}',
    '{"exp":9007199254740993}', '{"exp":-9223372036854775808}', '{"exp":9223372036854775808}',
    '{"exp":1e300}', '{"exp":1e400}', '{"exp":1e300,"exp":5}', '{"exp":1e400,"exp":5}', '{"exp":true}',
    '{"exp":[1]}', '', ' ', '{', '{"exp":1,}', '{"exp":01}', '{"exp":1.}', '{"exp":.5}', '{"exp":+1}',
    '{"exp":1}x', '{"a":"\\x"}', '{"a":"\\u12"}', '{"a":"\x01"}', '{"a":[1,]}', '{"a":{1:2}}',
    '[{"exp":1}]', 'null', '1', ' \t\r\n{ "a" : [ 1 , { } , [ ] , "\u00ff" , true , false , null ] , "exp" : 6 } \n',
    b'{"a":"\xff\xc3\x28\x7f","exp":6}', '{"a":' + '[' * 130 + ']' * 130 + ',"exp":3}',
    '{"a":"\\ud800","exp":3}', '{"\\ud83d\\ude00":1,"iat":2}',
]:
    payload(p)
for t in [b"", b"6a2e1e3a-9a6b-4c1e-8f4e-0e6a2b1c3d4e", b"a.b", b"a.b.c.d.e", b"a.e30*.c", b"a.e30xx.c",
          b"a..c", b"a.W10.c", b"a.e30=.c", b"a.e30==.c", b"a.e3=0.c", b"a.e\r\n30.c", b"a.e31.c", b"a.+/.c",
          b"eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJub21hZF90YXNrIjoiaG9sZXB1bmNoIn0.c2lnbmF0dXJl"]:
    write("jwt_exp", b"\x01" + t)
