"""Server instructions per request, counted by callgrind (docs/benchmarks.md, twelfth pass).

Run by count-instructions.sh with the server already under valgrind on 127.0.0.1:$PORT.
Logs in as the demo OWNER, tops the organization up to 60 contacts, warms up with 50
gets, 50 list pages (and 50 creates when counting creates), then switches callgrind's counting on only around
the measured requests: 300 gets (`get`), 100 first pages of 50 (`list`) or 100 creates
(`create`, with the event numberer's work they cause), on one keep-alive connection. Loopback only; standard library only.
"""
import http.client
import json
import os
import subprocess
import sys

PORT = int(os.environ.get("PORT", "8099"))
password = open(os.path.join(os.environ["NEXUS_DATA_DIR"], "demo-password")).read().strip()
conn = http.client.HTTPConnection("127.0.0.1", PORT)


def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    res = conn.getresponse()
    return res.status, res.read()


status, body = call("POST", "/api/v1/auth/login", {"email": "demo@nexus.local", "password": password})
assert status == 200, (status, body)
token = json.loads(body)["accessToken"]
status, body = call("GET", "/api/v1/contacts?limit=200", token=token)
for i in range(len(json.loads(body)["data"]), 60):
    status, body = call("POST", "/api/v1/contacts", {
        "firstName": f"First{i}", "lastName": f"Smith{i}", "email": f"person{i}@example.com",
        "phone": "+44 20 7946 %04d" % i, "company": f"Company {i}", "tags": ["vip", f"t{i % 5}"],
    }, token=token)
    assert status == 201, (status, body)
status, body = call("GET", "/api/v1/contacts?limit=50", token=token)
ids = [c["id"] for c in json.loads(body)["data"]]


created = 0


def run(gets, pages, creates=0):
    global created
    for i in range(gets):
        assert call("GET", "/api/v1/contacts/" + ids[i % len(ids)], token=token)[0] == 200
    for _ in range(pages):
        assert call("GET", "/api/v1/contacts?limit=50", token=token)[0] == 200
    # The benchmark's create: a name and a new email.
    for _ in range(creates):
        created += 1
        body = {"firstName": "Bench", "lastName": "Person", "email": f"count-{os.getpid()}-{created}@bench.io"}
        assert call("POST", "/api/v1/contacts", body, token=token)[0] == 201


# Creates only when they are what is counted: they become the newest contacts, which
# would change the page a list count reads.
run(50, 50, 50 if sys.argv[1] == "create" else 0)
subprocess.run(["callgrind_control", "-i", "on"], check=True, capture_output=True)
{"get": lambda: run(300, 0), "list": lambda: run(0, 100), "create": lambda: run(0, 0, 100)}[sys.argv[1]]()
subprocess.run(["callgrind_control", "-i", "off"], check=True, capture_output=True)
