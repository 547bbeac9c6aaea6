#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_provision (fuzz/corpus/provision/seed-*.bin):
one request each, JSON or CBOR, against the harness's built-in templates or a
template the seed brings.  See fuzz_provision.c for the layout.  CBOR is
written by the small encoder below, not by the C code under test.
Run from the repository root: python3 fuzz/make-provision-seeds.py [--clean]"""
import json
import os
import sys

OUT = "fuzz/corpus/provision"
TOKEN = "~" * 64  # the harness puts its token here

# ---- a minimal CBOR encoder (RFC 8949) ----

def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([major << 5 | ai]) + n.to_bytes(width, "big")
    raise ValueError(n)

def cbor(v, indef=False):
    if v is None:
        return b"\xf6"
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, float):
        import struct
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        if indef and len(b) > 1 and v != TOKEN:
            h = len(b) // 2
            return b"\x7f" + head(3, h) + b[:h] + head(3, len(b) - h) + b[h:] + b"\xff"
        return head(3, len(b)) + b
    if isinstance(v, list):
        body = b"".join(cbor(x, indef) for x in v)
        return (b"\x9f" + body + b"\xff") if indef else head(4, len(v)) + body
    if isinstance(v, dict):
        body = b"".join(cbor(k, indef) + cbor(x, indef) for k, x in v.items())
        return (b"\xbf" + body + b"\xff") if indef else head(5, len(v)) + body
    raise TypeError(v)

# ---- the layout ----

KEYS, CSR, REGISTER = 0, 1, 2
F_CBOR, F_TPL, F_TOKEN, F_EXPIRE = 0x04, 0x08, 0x10, 0x20

def seed(op, payload=b"", cbor_topic=False, template=None, token=False, expire=False, backend=0, tpl=0,
         disabled=False, unknown=False):
    flags = op | (F_CBOR if cbor_topic else 0) | (F_TPL if template is not None else 0) \
        | (F_TOKEN if token else 0) | (F_EXPIRE if expire else 0) | backend << 6
    out = bytes([flags, tpl | (0x40 if unknown else 0) | (0x80 if disabled else 0)])
    if template is not None:
        t = template.encode() if isinstance(template, str) else template
        out += len(t).to_bytes(2, "little") + t
    return out + (payload.encode() if isinstance(payload, str) else payload)

def j(v):
    return json.dumps(v, separators=(",", ":"))

CANONICAL = {
    "Parameters": {"SerialNumber": {"Type": "String"}, "DeviceLocation": {"Type": "String"},
                   "AWS::IoT::Certificate::Id": {"Type": "String"}},
    "Mappings": {"LocationTable": {"Seattle": {"LocationUrl": "https://example.aws"}}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing",
                  "Properties": {"ThingName": {"Fn::Join": ["", ["ThingPrefix_", {"Ref": "SerialNumber"}]]},
                                 "AttributePayload": {"version": "v1", "serialNumber": "serialNumber"}},
                  "OverrideSettings": {"AttributePayload": "MERGE", "ThingTypeName": "REPLACE",
                                       "ThingGroups": "DO_NOTHING"}},
        "certificate": {"Type": "AWS::IoT::Certificate",
                        "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"},
                        "OverrideSettings": {"Status": "REPLACE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iot:Connect"], "Resource": "*"}]}}},
    },
    "DeviceConfiguration": {"FallbackUrl": "https://www.example.com/test-site",
                            "LocationUrl": {"Fn::FindInMap": ["LocationTable", {"Ref": "DeviceLocation"},
                                                              "LocationUrl"]}},
}
CERT = {"c": {"Type": "AWS::IoT::Certificate",
              "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}}}}

def dc_template(value, params=None, mappings=None):
    t = {"Resources": dict(CERT), "DeviceConfiguration": {"v": value}}
    if params:
        t["Parameters"] = params
    if mappings:
        t["Mappings"] = mappings
    return j(t)

REG = {"certificateOwnershipToken": TOKEN, "parameters": {"SerialNumber": "1", "DeviceLocation": "Seattle"}}
PARAMS_EVERY = {"N": "n1", "A": "p,q,r", "I": "2", "L": "Oslo"}

seeds = {}

# CreateKeysAndCertificate
for name, p in (("empty", ""), ("obj", "{}"), ("members", '{"a":[1,{"b":null}]}'), ("array", "[]"),
                ("garbage", "{nope"), ("trailing", "{} x"), ("badutf8", b'{"a":"\xff"}')):
    seeds[f"keys-json-{name}"] = seed(KEYS, p)
for name, p in (("empty", b""), ("map", cbor({})), ("indef", cbor({"a": [1, 2]}, indef=True)),
                ("array", cbor([])), ("bytes", cbor({"a": b"\x00"})), ("trunc", b"\xa1\x61"),
                ("intkey", b"\xa1\x01\x02"), ("nested", b"\xa1\x61a" + b"\x81" * 40 + b"\x01"),
                ("float", cbor({"f": 1.5, "n": -3, "b": True, "z": None})), ("tag", b"\xa1\x61a\xc1\x1a\x00\x01\x00\x00")):
    seeds[f"keys-cbor-{name}"] = seed(KEYS, p, cbor_topic=True)
seeds["keys-backend-fails"] = seed(KEYS, "", backend=2)
seeds["keys-no-backend"] = seed(KEYS, "{}", backend=3)

# CreateCertificateFromCsr
CSR_PEM = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
seeds["csr-json"] = seed(CSR, j({"certificateSigningRequest": CSR_PEM}))
seeds["csr-json-bad"] = seed(CSR, j({"certificateSigningRequest": "BAD"}))
seeds["csr-json-missing"] = seed(CSR, "{}")
seeds["csr-json-number"] = seed(CSR, '{"certificateSigningRequest":1}')
seeds["csr-cbor"] = seed(CSR, cbor({"certificateSigningRequest": CSR_PEM}), cbor_topic=True)
seeds["csr-cbor-indef"] = seed(CSR, cbor({"certificateSigningRequest": CSR_PEM}, indef=True), cbor_topic=True)
seeds["csr-backend-fails"] = seed(CSR, j({"certificateSigningRequest": CSR_PEM}), backend=2)

# RegisterThing against the built-in templates
seeds["reg-canonical"] = seed(REGISTER, j(REG), token=True)
seeds["reg-canonical-cbor"] = seed(REGISTER, cbor(REG), cbor_topic=True, token=True)
seeds["reg-canonical-cbor-indef"] = seed(REGISTER, cbor(REG, indef=True), cbor_topic=True, token=True)
seeds["reg-canonical-expired"] = seed(REGISTER, j(REG), token=True, expire=True)
seeds["reg-canonical-409"] = seed(REGISTER, j(REG), token=True, backend=1)
seeds["reg-canonical-no-backend"] = seed(REGISTER, j(REG), token=True, backend=3)
seeds["reg-canonical-disabled"] = seed(REGISTER, j(REG), token=True, disabled=True)
seeds["reg-canonical-oslo"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN,
                                                "parameters": {"SerialNumber": "1", "DeviceLocation": "Oslo"}}),
                                   token=True)
seeds["reg-unknown-template"] = seed(REGISTER, j(REG), token=True, unknown=True)
seeds["reg-null-params"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN, "parameters": None}), token=True,
                                tpl=2)
seeds["reg-no-params"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN}), token=True)
seeds["reg-empty-token"] = seed(REGISTER, '{"certificateOwnershipToken":""}')
seeds["reg-unknown-token"] = seed(REGISTER, j({"certificateOwnershipToken": "0" * 64}))
seeds["reg-bad-params"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN, "parameters": {"a": 1}}), token=True)
seeds["reg-every"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN, "parameters": PARAMS_EVERY}),
                          token=True, tpl=1)
seeds["reg-every-cbor"] = seed(REGISTER, cbor({"certificateOwnershipToken": TOKEN, "parameters": PARAMS_EVERY}),
                               cbor_topic=True, token=True, tpl=1)
seeds["reg-every-bad-index"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN,
                                                 "parameters": dict(PARAMS_EVERY, I="9")}), token=True, tpl=1)
seeds["reg-nothing"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN, "parameters": {"K": "v"}}),
                            token=True, tpl=2)
seeds["reg-policy-name"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN, "parameters": {"P": "pol-1"}}),
                                token=True, tpl=3)
seeds["reg-policy-bad-name"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN, "parameters": {"P": "a b"}}),
                                    token=True, tpl=3)

# Templates the seed brings
seeds["tpl-canonical"] = seed(REGISTER, j(REG), template=j(CANONICAL), token=True)
seeds["tpl-canonical-string"] = seed(REGISTER, j(REG), template=j(j(CANONICAL)), token=True)
FN_VALUES = [
    {"Ref": "P"},
    {"Fn::Join": ["-", [{"Ref": "P"}, "x", {"Fn::Select": [0, ["a"]]}]]},
    {"Fn::Select": ["1", {"Fn::Split": [",", {"Ref": "P"}]}]},
    {"Fn::FindInMap": ["M", {"Ref": "P"}, "k"]},
    {"Fn::Sub": "${P}-${!Q}"},
    {"Fn::Sub": ["${V}", {"V": {"Fn::Join": ["", ["a", "b"]]}}]},
    {"Fn::Select": [5, ["a"]]},
    {"Fn::Select": [0, [None]]},
    {"Fn::Split": [",", "a,b"]},
]
for i, v in enumerate(FN_VALUES):
    t = dc_template(v, {"P": {"Type": "String", "Default": "a,b"}}, {"M": {"a,b": {"k": "found"}}})
    seeds[f"tpl-fn-{i}"] = seed(REGISTER, j({"certificateOwnershipToken": TOKEN}), template=t, token=True)
    seeds[f"tpl-fn-{i}-cbor"] = seed(REGISTER, cbor({"certificateOwnershipToken": TOKEN, "parameters": {"P": "x"}}),
                                     cbor_topic=True, template=t, token=True)
BAD_TEMPLATES = [
    "{}", "[]", '"{}"', '{"Resources":{}}', '{"Outputs":{}}',
    j({"Resources": dict(CERT, t={"Type": "AWS::IoT::Thing", "Properties": {}})}),
    j({"Resources": {"c": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateSigningRequest": "x"}}}}),
    j({"Resources": dict(CERT, p={"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "a",
                                                                            "PolicyDocument": {}}})}),
    dc_template({"a": "b"}), dc_template({"Fn::GetAtt": ["a", "b"]}), dc_template({"Fn::Sub": "${"}),
    j({"Mappings": {"M": {"a": {"b": {"Ref": "x"}}}}, "Resources": CERT}),
    j({"Parameters": {"P": {"Type": "Number"}}, "Resources": CERT}),
    j({"Parameters": {"P": {"Type": "String", "Default": 1, "X": 2}}, "Resources": CERT}),
    j({"Resources": {"c": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": "x", "Status": "ON"},
                           "OverrideSettings": {"Status": "MERGE"}}}}),
    j({"Resources": dict(CERT, p={"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": "{x"}},
                         q={"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "q"}, "OverrideSettings": {}})}),
    j({"Resources": dict(CERT, t={"Type": "AWS::IoT::Thing", "Properties": {
        "ThingName": "a", "AttributePayload": {"k": 1}, "ThingGroups": "g", "Tags": []},
        "OverrideSettings": {"ThingTypeName": "MERGE"}})}),
    dc_template({"Fn::Join": ["", [{"Fn::Select": [-1, {"Fn::Split": ["", "a"]}]}]]}),
    dc_template({"Fn::FindInMap": ["M", "a", "zz"]}, mappings={"M": {"a": {"b": "c"}}}),
    dc_template({"Fn::Sub": ["${a}", {"v": []}]}),
    dc_template({"Ref": "x", "Fn::Join": []}),
]
for i, t in enumerate(BAD_TEMPLATES):
    seeds[f"tpl-bad-{i}"] = seed(REGISTER, j(REG), template=t, token=True)

# The whole input is also tried as a topic.
for i, t in enumerate(("$aws/certificates/create/json", "$aws/certificates/create-from-csr/cbor",
                       "$aws/provisioning-templates/my_Template-1/provision/json",
                       "$aws/provisioning-templates/T/provision/json/accepted")):
    seeds[f"topic-{i}"] = t.encode()

def main():
    clean = "--clean" in sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    names = set()
    for name, data in seeds.items():
        fn = f"seed-{name}.bin"
        names.add(fn)
        with open(os.path.join(OUT, fn), "wb") as f:
            f.write(data)
    if clean:
        for fn in os.listdir(OUT):
            if fn.startswith("seed-") and fn not in names:
                os.remove(os.path.join(OUT, fn))
    print(f"{len(seeds)} seeds in {OUT}")

if __name__ == "__main__":
    main()
