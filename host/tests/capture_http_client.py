"""A standard SOAP client against a wasp http capture point.

Run by host/tests/capture_http.rs with the Python of a venv holding zeep:
    python capture_http_client.py <WSDL URL>
It imports the served WSDL, calls Submit, GetInfo, Ping and Stop, then a
GetInfo that faults, and prints one line per call for the test to check.
"""

import sys

import zeep
from zeep.exceptions import Fault
from zeep.helpers import serialize_object

client = zeep.Client(sys.argv[1])
service = client.service
print("address", client.service._binding_options["address"])


def kv(items):
    """A KV list as zeep builds it from the schema: kvitem, key, value."""
    out = []
    for key, value in items:
        if isinstance(value, int):
            out.append({"key": key, "value": {"ValueInt": value}})
        elif isinstance(value, list):
            out.append({"key": key, "value": {"ValueList": {"kvitem": kv(value)}}})
        else:
            out.append({"key": key, "value": {"ValueString": value}})
    return out


def flat(items):
    """key=value for every leaf of a KV list answer, in order."""
    out = []
    for item in items or []:
        value = item["value"]
        if value.get("ValueList") is not None:
            out += flat(value["ValueList"]["kvitem"])
        elif value.get("ValueInt") is not None:
            out.append((item["key"], value["ValueInt"]))
        else:
            out.append((item["key"], value.get("ValueString")))
    return out


def extension(response):
    """The Extension of a RequestResponse (zeep may unwrap the one child)."""
    response = serialize_object(response)
    if isinstance(response, dict) and "Extension" in response:
        response = response["Extension"]
    if isinstance(response, dict):
        response = response.get("kvitem")
    return dict(flat(response))


submitted = service.Submit(
    ExternalId="soap-1",
    UserData={"kvitem": kv([("Subject", "parcel"), ("Priority", 5),
                            ("Customer", [("Segment", "silver")])])},
)
interaction = extension(submitted)["InteractionId"]
print("submit", interaction)

info = serialize_object(service.GetInfo(ExternalId="soap-1"))
props = dict(flat(info["UserData"]["kvitem"]))
print("getinfo", info["InteractionId"], info["TenantId"], info["Queue"],
      "Subject=%s Priority=%s Segment=%s" % (props["Subject"], props["Priority"], props["Segment"]))

stats = extension(service.Ping())
print("ping", stats["CapturePoint"], "Taken=%s Nodes=%s" % (stats["Taken"], stats["Nodes"]))

service.Stop(InteractionId=interaction)
print("stop ok")

try:
    service.GetInfo(ExternalId="no-such-order")
    print("fault none")
except Fault as fault:
    code = fault.detail.find("{http://www.genesyslab.com/interaction}FaultMessage/"
                             "{http://www.genesyslab.com/interaction}ErrorCode").text
    print("fault", code, fault.code.split(":")[-1])
