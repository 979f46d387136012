"""Drives nomad-holepunch with python-nomad, a widely used Nomad client
library, as an application would. Run by tests/clients.rs:

    python python_nomad.py HOST PORT

The proxy runs with SERVICES and NODES allowed (plus the default METRICS and
AGENT_HEALTH) and AGENT_SELF not. The client holds no Nomad token: the proxy
adds the workload's. Prints one line per step and exits 1 on the first
failure.

python-nomad 2.1 has no method for agent health or for the service
registration endpoints, so those go through its own request machinery
(`Requester.request`) with the endpoint named, which is how the library's
own methods are built.
"""

import sys

import nomad
from nomad.api.base import Requester
from nomad.api.exceptions import URLNotAuthorizedNomadException


class Services(Requester):
    """GET /v1/services and /v1/service/:name."""

    ENDPOINT = "services"


class Service(Requester):
    ENDPOINT = "service"


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    client = nomad.Nomad(host=host, port=port, timeout=10)
    settings = client.requester_settings

    health = client.agent.request("health", method="get").json()
    if health.get("client", {}).get("ok") is not True:
        fail(f"agent health: {health}")
    print("ok   agent health: client ok")

    nodes = client.nodes.get_nodes()
    if not nodes or not nodes[0].get("ID") or nodes[0].get("Status") != "ready":
        fail(f"nodes: {nodes}")
    print(f"ok   nodes: {len(nodes)} node(s), first {nodes[0]['ID']} {nodes[0]['Status']}")

    namespaces = Services(**settings).request(method="get").json()
    names = [s["ServiceName"] for ns in namespaces for s in ns.get("Services", [])]
    if "web" not in names:
        fail(f"services: {namespaces}")
    print(f"ok   services: {', '.join(names)}")

    registrations = Service(**settings).request("web", method="get").json()
    if not registrations or registrations[0].get("ServiceName") != "web":
        fail(f"service web: {registrations}")
    web = registrations[0]
    print(f"ok   service web: {web['Address']}:{web['Port']} tags {','.join(web['Tags'])}")

    try:
        client.agent.get_agent()
        fail("agent self: allowed, but AGENT_SELF is off")
    except URLNotAuthorizedNomadException as e:
        text = e.nomad_resp.text
        if e.nomad_resp.status_code != 403 or "HOLEPUNCH_ALLOW_AGENT_SELF" not in text:
            fail(f"agent self: expected a 403 naming HOLEPUNCH_ALLOW_AGENT_SELF, got {e}")
        print(f"ok   agent self: denied: {text}")

    # A denied request leaves the client and the proxy as they were.
    again = client.nodes.get_nodes()
    if again != nodes:
        fail(f"nodes after the denial: {again}")
    print("ok   nodes again after the denial")
    print("python-nomad: all steps passed")


if __name__ == "__main__":
    main()
