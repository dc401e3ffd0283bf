#!/usr/bin/env python3
"""Data for the scale run of scripts/bench.sh (issue 9).

    scale_data.py schemas DIR --services 1000 --fields 50
        writes DIR/scale-svc-NNNN.json: JSON Schemas of synthetic services
        (mixed field types, descriptions from a small vocabulary so that a
        search term matches a realistic fraction of all fields).

    scale_data.py history DB --rows 1000000
        appends history rows straight into the SQLite file of a stopped
        config-manager (table `history` of
        crates/config-manager-core/src/store/migrations/0001_init.sql):
        services and keys taken from `config_items`, timestamps spread over
        the past year in id order, as the service itself would have written
        them.

Standard library only.
"""

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import sys

WORDS = [
    "timeout", "retry", "buffer", "model", "voice", "volume", "threshold",
    "port", "host", "path", "rate", "window", "cache", "batch", "queue",
    "level", "gain", "delay", "limit", "size", "speaker", "language", "beam",
    "chunk", "token", "temperature", "silence", "energy", "frame", "device",
]


def field(i, j):
    word = WORDS[(i * 7 + j) % len(WORDS)]
    other = WORDS[(i * 3 + j * 5 + 1) % len(WORDS)]
    key = f"{word}_{j:02d}"
    desc = f"Controls the {word} of the {other} stage in this service."
    kind = j % 6
    if kind == 0:
        prop = {"type": "string", "minLength": 1, "maxLength": 200,
                "default": f"{other}-default"}
    elif kind == 1:
        prop = {"type": "integer", "minimum": 0, "maximum": 100000,
                "default": (i * 31 + j) % 1000}
    elif kind == 2:
        prop = {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5}
    elif kind == 3:
        prop = {"type": "boolean", "default": j % 2 == 0}
    elif kind == 4:
        prop = {"type": "string", "x-type": "enum",
                "enum": ["low", "medium", "high"], "default": "medium"}
    else:
        prop = {"type": ["string", "null"], "maxLength": 500, "default": None}
    prop.update({
        "title": f"{word.capitalize()} {j}",
        "description": desc,
        "x-complexity": "advanced" if j % 3 == 2 else "simple",
    })
    return key, prop


def schemas(args):
    os.makedirs(args.dir, exist_ok=True)
    for i in range(args.services):
        props = dict(field(i, j) for j in range(args.fields))
        doc = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"Scale service {i}",
            "description": "A generated service for the scale benchmark.",
            "type": "object",
            "additionalProperties": False,
            "properties": props,
        }
        with open(os.path.join(args.dir, f"scale-svc-{i:04d}.json"), "w") as f:
            json.dump(doc, f, indent=1)
    print(f"wrote {args.services} schemas of {args.fields} fields to {args.dir}")


def history(args):
    db = sqlite3.connect(args.db)
    db.execute("PRAGMA synchronous=OFF")
    (epoch,) = db.execute("SELECT config_epoch FROM epoch").fetchone()
    keys = {}
    for service, key in db.execute("SELECT service, key FROM config_items WHERE is_secret = 0"):
        keys.setdefault(service, []).append(key)
    services = sorted(keys)
    if not services:
        sys.exit("no services in config_items: start the service once first")
    rng = random.Random(9)
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(days=365)
    step = (now - dt.timedelta(hours=1) - start) / args.rows
    versions = {s: 1 for s in services}

    def rows():
        for n in range(args.rows):
            service = services[rng.randrange(len(services))]
            versions[service] += 1
            at = start + step * n
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
            yield (service, rng.choice(keys[service]), str(rng.randrange(1000)),
                   str(rng.randrange(1000)), versions[service], epoch, stamp,
                   "bench", None, "update")

    with db:
        db.executemany(
            "INSERT INTO history (service, key, old_value, new_value, version, config_epoch,"
            " changed_at, changed_by, change_reason, change_type)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (total,) = db.execute("SELECT count(*) FROM history").fetchone()
    db.close()
    print(f"history now has {total} rows over {len(services)} services")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("schemas")
    s.add_argument("dir")
    s.add_argument("--services", type=int, default=1000)
    s.add_argument("--fields", type=int, default=50)
    h = sub.add_parser("history")
    h.add_argument("db")
    h.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args()
    {"schemas": schemas, "history": history}[args.cmd](args)


if __name__ == "__main__":
    main()
