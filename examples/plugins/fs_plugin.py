#!/usr/bin/env python3
"""An example dg I/O manager plug-in: stores each output as a file under a
root folder, one file per partition. Standard library only.

dg starts it once per run and talks to it in JSON lines (protocol 1, see
docs/plugins.md). Configure it as:

    [resources.files]
    type = "command"
    command = ["python3", "examples/plugins/fs_plugin.py"]
    format = "csv"
    config = { root = "plugin-data" }
"""
import json
import os
import shutil
import sys
import tempfile

PROTOCOL = 1
root = None


def path_for(asset_key, partition, fmt):
    # Keys are made path-safe by percent-encoding `%`, `/` and a leading `.`.
    def safe(s):
        s = s.replace("%", "%25").replace("/", "%2F")
        return "%2E" + s[1:] if s.startswith(".") else s

    ext = "" if fmt == "file" else "." + fmt
    parts = [safe(seg) for seg in asset_key.split("/")]
    if partition is None:
        parts[-1] += ext
    else:
        parts.append(safe(partition["key"]) + ext)
    return os.path.join(root, *parts)


def handle_output(msg):
    dest = path_for(msg["asset_key"], msg["partition"], msg["format"])
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    # Atomic: copy to a temporary file next to the destination, flush it to
    # disk, then rename it over the destination. Readers see the old file or
    # the new one, never a partial one.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out, open(msg["path"], "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise
    return {"metadata": {"path": dest, "bytes": os.path.getsize(dest)}}


def load_input(msg):
    parts = msg["partitions"]
    files = []
    for p in (parts if parts is not None else [None]):
        src = path_for(msg["asset_key"], p, msg["format"])
        if not os.path.exists(src):
            what = f"{msg['asset_key']} [{p['key']}]" if p else msg["asset_key"]
            raise FileNotFoundError(f"{what} is not stored at {src}")
        files.append({"key": p["key"] if p else None, "path": src})
    return {"files": files}


def exists(msg):
    return {"exists": os.path.exists(path_for(msg["asset_key"], msg["partition"], msg["format"]))}


for line in sys.stdin:
    msg = json.loads(line)
    kind = msg.get("type")
    if kind == "hello":
        # Check the config once, and reply with the protocol this plug-in
        # speaks (dg stops it if that is not the one dg speaks).
        root = msg["config"].get("root", "plugin-data")
        if msg["protocol"] != PROTOCOL:
            reply = {"ok": False, "error": f"this plug-in speaks protocol {PROTOCOL}, not {msg['protocol']}"}
        elif not isinstance(root, str):
            reply = {"ok": False, "error": f"config `root` must be a folder name, not {root!r}"}
        else:
            root = os.path.join(msg["project_root"], root)
            reply = {"ok": True, "protocol": PROTOCOL, "name": "example-fs"}
    elif kind == "shutdown":
        break
    else:
        handler = {"handle_output": handle_output, "load_input": load_input, "exists": exists}.get(kind)
        try:
            if handler is None:
                raise ValueError(f"unknown request type {kind!r}")
            reply = {"ok": True, **handler(msg)}
        except Exception as e:  # report the failure to dg; keep serving
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        reply["id"] = msg.get("id")
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
