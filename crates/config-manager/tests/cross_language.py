#!/usr/bin/env python3
"""Verifies real config-manager MQTT messages the way a Python TARS service would.

Independent of the Rust code: paho-mqtt receives the retained messages,
`rfc8785` (a separate RFC 8785 implementation) builds the canonical bytes,
and `cryptography` checks the Ed25519 signature with the public key read from
the manager's `.env` file. Rules: contracts/README.md.

Run by tests/mqtt.rs (`python_verifies_real_published_messages`) with the venv
that scripts/test.sh creates:

    .venv-test/bin/python crates/config-manager/tests/cross_language.py \
        --port 1883 --env-file .env --expect tts-worker=3 --min-services 6
"""

import argparse
import base64
import hashlib
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

MEMBERS = {"version", "service", "config", "checksum", "config_epoch", "issued_at", "key_id", "signature"}


def read_env_value(path, name):
    """One value of a .env file as config-manager writes it: KEY="..." with
    \\n, \\", \\\\ and \\$ escaped inside double quotes (or unquoted)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.startswith(name + "="):
                continue
            raw = line[len(name) + 1:]
            if not (raw.startswith('"') and raw.endswith('"') and len(raw) >= 2):
                return raw.strip()
            out, i, body = [], 0, raw[1:-1]
            while i < len(body):
                c = body[i]
                if c == "\\" and i + 1 < len(body):
                    nxt = body[i + 1]
                    out.append("\n" if nxt == "n" else nxt)
                    i += 2
                else:
                    out.append(c)
                    i += 1
            return "".join(out)
    raise SystemExit(f"{name} not found in {path}")


def key_id(public_key):
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def verify(payload, topic, public_key):
    """Returns the parsed envelope; raises AssertionError/InvalidSignature."""
    msg = json.loads(payload)
    assert set(msg) == MEMBERS, f"members {sorted(msg)}"
    assert topic == "system/config/" + msg["service"], f"topic {topic} vs service {msg['service']}"
    assert msg["key_id"] == key_id(public_key), "key id does not name the .env key"
    signature = base64.b64decode(msg["signature"], validate=True)
    assert len(signature) == 64, "signature length"
    checksum = hashlib.sha256(rfc8785.dumps(msg["config"])).hexdigest()
    assert checksum == msg["checksum"], "checksum mismatch"
    unsigned = {k: v for k, v in msg.items() if k != "signature"}
    public_key.verify(signature, rfc8785.dumps(unsigned))
    # The manager publishes canonical JSON: the payload is exactly the
    # canonical form of what it parses to.
    assert payload == rfc8785.dumps(msg), "payload is not in canonical form"
    return msg


def must_fail(msg, public_key, mutate, what):
    tampered = json.loads(json.dumps(msg))
    mutate(tampered)
    unsigned = {k: v for k, v in tampered.items() if k != "signature"}
    try:
        public_key.verify(base64.b64decode(tampered["signature"]), rfc8785.dumps(unsigned))
    except InvalidSignature:
        return
    raise AssertionError(f"tampered message ({what}) still verified")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--expect", action="append", default=[], help="service=version")
    parser.add_argument("--min-services", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    public_key = load_pem_public_key(read_env_value(args.env_file, "CONFIG_SIGNATURE_PUBLIC_KEY").encode())
    expected = dict(e.split("=", 1) for e in args.expect)
    expected = {k: int(v) for k, v in expected.items()}

    received = {}
    lock = threading.Lock()
    done = threading.Event()

    def on_message(_client, _userdata, message):
        with lock:
            received[message.topic] = (message.payload, message.retain, message.qos)
            services = {t.rsplit("/", 1)[-1] for t in received}
            ready = len(services) >= args.min_services and all(
                s in services and json.loads(received["system/config/" + s][0]).get("version") == v
                for s, v in expected.items()
            )
        if ready:
            done.set()

    def on_connect(client, _userdata, _flags, reason_code, _properties):
        if reason_code != 0:
            raise SystemExit(f"connect refused: {reason_code}")
        client.subscribe("system/config/+", qos=1)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"py-verifier-{time.time_ns()}")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    finished = done.wait(args.timeout)
    client.loop_stop()
    client.disconnect()

    failures = 0
    with lock:
        snapshot = dict(received)
    if not finished:
        print(f"timed out: received {sorted(snapshot)}, expected {expected}", file=sys.stderr)
        failures += 1
    checked = 0
    for topic, (payload, retain, qos) in sorted(snapshot.items()):
        try:
            assert retain, "not retained"
            assert qos == 1, f"QoS {qos}"
            msg = verify(payload, topic, public_key)
            want = expected.get(msg["service"])
            assert want is None or msg["version"] == want, f"version {msg['version']} != {want}"
            must_fail(msg, public_key, lambda m: m["config"].update({"__injected": 1}), "config changed")
            must_fail(msg, public_key, lambda m: m.update({"version": m["version"] + 1}), "version bumped")
            checked += 1
            print(f"verified {topic} version {msg['version']} key {msg['key_id']}")
        except (AssertionError, InvalidSignature, ValueError) as e:
            failures += 1
            print(f"FAILED {topic}: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"cross-language: {checked} verified, {failures} failed")
    return 0 if failures == 0 and checked >= args.min_services else 1


if __name__ == "__main__":
    sys.exit(main())
