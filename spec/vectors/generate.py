#!/usr/bin/env python3
"""Writes frames.json, mux's byte-exact frame test vectors (spec §14).

This is a second, independent encoder written from the spec's layouts (§3-§5),
not from the Rust code: the Rust tests load frames.json and check that
mux-core decodes and encodes exactly these bytes. Run it after editing a
vector; commit both files.

    python3 spec/vectors/generate.py
"""
import json
import os
import struct

ERR = {
    "NO_ERROR": 0x0, "PROTOCOL_ERROR": 0x1, "INTERNAL_ERROR": 0x2, "FLOW_CONTROL_ERROR": 0x3,
    "SETTINGS_TIMEOUT": 0x4, "STREAM_CLOSED": 0x5, "FRAME_SIZE_ERROR": 0x6, "REFUSED_STREAM": 0x7,
    "CANCEL": 0x8, "ENHANCE_YOUR_CALM": 0x9, "METADATA_TOO_LARGE": 0xa, "UNSUPPORTED_VERSION": 0xb,
    "IDLE_TIMEOUT": 0xc, "INADEQUATE_SECURITY": 0xd,
}
TYPE = {"DATA": 0, "OPEN": 1, "RESET": 2, "SETTINGS": 3, "PING": 4, "GOAWAY": 5, "WINDOW_UPDATE": 6, "PUSH": 7}
SETTING = {"MAX_FRAME_SIZE": 1, "MAX_CONCURRENT_STREAMS": 2, "INITIAL_STREAM_WINDOW": 3, "MAX_METADATA_SIZE": 4}


def header(length, ftype, flags, stream):
    return struct.pack(">I", length)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream)


def frame(ftype, flags, stream, payload):
    return header(len(payload), ftype, flags, stream) + payload


def metadata(entries):
    out = b""
    for name, value in entries:
        name, value = name.encode(), bytes.fromhex(value)
        out += bytes([len(name)]) + name + struct.pack(">H", len(value)) + value
    return out


def encode(f):
    """Encodes a frame description as the spec lays it out."""
    t = f["type"]
    if t == "DATA":
        flags = (1 if f["end_stream"] else 0) | (2 if f["end_message"] else 0)
        return frame(0, flags, f["stream"], bytes.fromhex(f["data"]))
    if t == "OPEN":
        return frame(1, 1 if f["end_stream"] else 0, f["stream"], metadata(f["metadata"]))
    if t == "RESET":
        return frame(2, 0, f["stream"], struct.pack(">I", f["error"]))
    if t == "SETTINGS":
        body = b"".join(struct.pack(">HI", i, v) for i, v in f["settings"])
        return frame(3, 1 if f["ack"] else 0, 0, body)
    if t == "PING":
        return frame(4, 1 if f["ack"] else 0, 0, bytes.fromhex(f["opaque"]))
    if t == "GOAWAY":
        return frame(5, 0, 0, struct.pack(">II", f["last_stream"], f["error"]) + bytes.fromhex(f["debug"]))
    if t == "WINDOW_UPDATE":
        return frame(6, 0, f["stream"], struct.pack(">I", f["increment"]))
    if t == "PUSH":
        body = struct.pack(">I", f["associated"]) + metadata(f["metadata"])
        return frame(7, 1 if f["end_stream"] else 0, f["promised"], body)
    if t == "UNKNOWN":
        return frame(f["frame_type"], f["flags"], f["stream"], bytes.fromhex(f["payload"]))
    raise ValueError(t)


def data(stream, payload=b"", end_stream=False, end_message=False):
    return {"type": "DATA", "stream": stream, "end_stream": end_stream, "end_message": end_message,
            "data": payload.hex()}


MAX_PAYLOAD = 16384

valid = [
    ("data-empty", "5.1", data(1)),
    ("data-end-message", "5.1", data(1, b"hello", end_message=True)),
    ("data-end-stream", "5.1", data(3, b"bye", end_stream=True)),
    ("data-empty-end-message-end-stream", "5.1", data(5, end_stream=True, end_message=True)),
    ("data-max-stream-id", "6.1", data(0x7fffffff, b"\x00\xff")),
    ("data-max-default-frame-size", "4.1", data(1, bytes(i % 251 for i in range(MAX_PAYLOAD)))),
    ("open-no-metadata", "5.2", {"type": "OPEN", "stream": 1, "end_stream": False, "metadata": []}),
    ("open-metadata", "5.2", {"type": "OPEN", "stream": 7, "end_stream": False,
                              "metadata": [["route", b"echo".hex()], [":deadline-ms", b"250".hex()]]}),
    ("open-end-stream-repeated-name-empty-value", "5.2.1",
     {"type": "OPEN", "stream": 9, "end_stream": True, "metadata": [["k", ""], ["k", "00ff"]]}),
    ("open-longest-name", "5.2.1", {"type": "OPEN", "stream": 1, "end_stream": False,
                                    "metadata": [["n" * 255, "01"]]}),
    ("reset-cancel", "5.3", {"type": "RESET", "stream": 1, "error": ERR["CANCEL"]}),
    ("reset-refused", "5.3", {"type": "RESET", "stream": 2, "error": ERR["REFUSED_STREAM"]}),
    ("reset-unknown-code", "4.4.3", {"type": "RESET", "stream": 3, "error": 0xdeadbeef}),
    ("settings-empty", "5.4", {"type": "SETTINGS", "ack": False, "settings": []}),
    ("settings-ack", "5.4", {"type": "SETTINGS", "ack": True, "settings": []}),
    ("settings-all", "5.4.1", {"type": "SETTINGS", "ack": False, "settings": [
        [SETTING["MAX_FRAME_SIZE"], 16777215], [SETTING["MAX_CONCURRENT_STREAMS"], 0],
        [SETTING["INITIAL_STREAM_WINDOW"], 0x7fffffff], [SETTING["MAX_METADATA_SIZE"], 0xffffffff]]}),
    ("settings-unknown-and-repeated", "4.4", {"type": "SETTINGS", "ack": False, "settings": [
        [0xabcd, 7], [SETTING["MAX_CONCURRENT_STREAMS"], 10], [SETTING["MAX_CONCURRENT_STREAMS"], 20]]}),
    ("settings-min-frame-size-zero-window", "5.4.1", {"type": "SETTINGS", "ack": False, "settings": [
        [SETTING["MAX_FRAME_SIZE"], 16384], [SETTING["INITIAL_STREAM_WINDOW"], 0]]}),
    ("ping", "5.5", {"type": "PING", "ack": False, "opaque": "0102030405060708"}),
    ("ping-ack", "5.5", {"type": "PING", "ack": True, "opaque": "ffffffffffffffff"}),
    ("goaway-graceful", "5.6", {"type": "GOAWAY", "last_stream": 0x7fffffff, "error": 0, "debug": ""}),
    ("goaway-error-debug", "5.6", {"type": "GOAWAY", "last_stream": 5, "error": ERR["ENHANCE_YOUR_CALM"],
                                   "debug": b"too many resets".hex()}),
    ("window-update-connection", "5.7", {"type": "WINDOW_UPDATE", "stream": 0, "increment": 1}),
    ("window-update-stream-max", "5.7", {"type": "WINDOW_UPDATE", "stream": 1, "increment": 0x7fffffff}),
    ("push-unsolicited", "5.8", {"type": "PUSH", "promised": 2, "associated": 0, "end_stream": False,
                                 "metadata": [["topic", b"news".hex()]]}),
    ("push-associated-end-stream", "5.8", {"type": "PUSH", "promised": 4, "associated": 1, "end_stream": True,
                                           "metadata": []}),
    ("unknown-type-ignored", "4.4", {"type": "UNKNOWN", "frame_type": 0xfe, "flags": 0xff, "stream": 0x7fffffff,
                                     "payload": "cafe"}),
    ("unknown-type-empty", "4.4", {"type": "UNKNOWN", "frame_type": 0x08, "flags": 0, "stream": 0, "payload": ""}),
]

# Bytes that decode to a frame but are not what an encoder produces: receivers
# ignore flag bits a type does not define (spec §4.2).
noncanonical = [
    ("data-undefined-flags-ignored", "4.2", frame(0, 0xfc, 1, b"x"), data(1, b"x")),
    ("ping-undefined-flags-ignored", "4.2", frame(4, 0xfe, 0, bytes(8)),
     {"type": "PING", "ack": False, "opaque": "0000000000000000"}),
]

invalid = [
    ("reserved-bit-in-stream-id", "4.1", frame(0, 0, 0x80000001, b""), "PROTOCOL_ERROR"),
    ("longer-than-max-frame-size", "4.1", header(MAX_PAYLOAD + 1, 0, 0, 1), "FRAME_SIZE_ERROR"),
    ("longest-length-field", "4.1", header(0xffffff, 0, 0, 1), "FRAME_SIZE_ERROR"),
    ("unknown-type-too-large", "4.1", header(MAX_PAYLOAD + 1, 0x42, 0, 0), "FRAME_SIZE_ERROR"),
    ("data-on-stream-0", "5.1", frame(0, 0, 0, b"x"), "PROTOCOL_ERROR"),
    ("open-on-stream-0", "5.2", frame(1, 0, 0, b""), "PROTOCOL_ERROR"),
    ("open-metadata-empty-name", "5.2.1", frame(1, 0, 1, b"\x00\x00\x00"), "PROTOCOL_ERROR"),
    ("open-metadata-truncated-name", "5.2.1", frame(1, 0, 1, b"\x05ab"), "PROTOCOL_ERROR"),
    ("open-metadata-truncated-value-len", "5.2.1", frame(1, 0, 1, b"\x01a\x00"), "PROTOCOL_ERROR"),
    ("open-metadata-truncated-value", "5.2.1", frame(1, 0, 1, b"\x01a\x00\x04xy"), "PROTOCOL_ERROR"),
    ("reset-on-stream-0", "5.3", frame(2, 0, 0, bytes(4)), "PROTOCOL_ERROR"),
    ("reset-short", "5.3", frame(2, 0, 1, bytes(3)), "FRAME_SIZE_ERROR"),
    ("reset-long", "5.3", frame(2, 0, 1, bytes(5)), "FRAME_SIZE_ERROR"),
    ("settings-on-stream-1", "5.4", frame(3, 0, 1, b""), "PROTOCOL_ERROR"),
    ("settings-length-not-multiple-of-6", "5.4", frame(3, 0, 0, bytes(7)), "FRAME_SIZE_ERROR"),
    ("settings-ack-with-payload", "5.4", frame(3, 1, 0, struct.pack(">HI", 2, 1)), "FRAME_SIZE_ERROR"),
    ("settings-max-frame-size-too-small", "5.4.1", frame(3, 0, 0, struct.pack(">HI", 1, 16383)),
     "PROTOCOL_ERROR"),
    ("settings-max-frame-size-too-large", "5.4.1", frame(3, 0, 0, struct.pack(">HI", 1, 16777216)),
     "PROTOCOL_ERROR"),
    ("settings-max-concurrent-streams-too-large", "5.4.1",
     frame(3, 0, 0, struct.pack(">HI", 2, 0x80000000)), "PROTOCOL_ERROR"),
    ("settings-initial-window-too-large", "5.4.1", frame(3, 0, 0, struct.pack(">HI", 3, 0x80000000)),
     "FLOW_CONTROL_ERROR"),
    ("ping-on-stream-1", "5.5", frame(4, 0, 1, bytes(8)), "PROTOCOL_ERROR"),
    ("ping-short", "5.5", frame(4, 0, 0, bytes(7)), "FRAME_SIZE_ERROR"),
    ("ping-long", "5.5", frame(4, 0, 0, bytes(9)), "FRAME_SIZE_ERROR"),
    ("goaway-on-stream-1", "5.6", frame(5, 0, 1, bytes(8)), "PROTOCOL_ERROR"),
    ("goaway-short", "5.6", frame(5, 0, 0, bytes(7)), "FRAME_SIZE_ERROR"),
    ("goaway-reserved-bit", "5.6", frame(5, 0, 0, struct.pack(">II", 0x80000000, 0)), "PROTOCOL_ERROR"),
    ("window-update-zero", "5.7", frame(6, 0, 1, bytes(4)), "PROTOCOL_ERROR"),
    ("window-update-zero-connection", "5.7", frame(6, 0, 0, bytes(4)), "PROTOCOL_ERROR"),
    ("window-update-reserved-bit", "5.7", frame(6, 0, 1, struct.pack(">I", 0x80000001)), "PROTOCOL_ERROR"),
    ("window-update-short", "5.7", frame(6, 0, 1, bytes(3)), "FRAME_SIZE_ERROR"),
    ("push-on-stream-0", "5.8", frame(7, 0, 0, bytes(4)), "PROTOCOL_ERROR"),
    ("push-odd-promised-stream", "5.8", frame(7, 0, 3, bytes(4)), "PROTOCOL_ERROR"),
    ("push-short", "5.8", frame(7, 0, 2, bytes(3)), "FRAME_SIZE_ERROR"),
    ("push-associated-reserved-bit", "5.8", frame(7, 0, 2, struct.pack(">I", 0x80000001)), "PROTOCOL_ERROR"),
    ("push-bad-metadata", "5.8", frame(7, 0, 2, bytes(4) + b"\x02a"), "PROTOCOL_ERROR"),
]

prefaces = {
    "valid": [
        {"name": "version-1", "section": "3", "hex": (b"\x89MUX\r\n" + struct.pack(">H", 1)).hex(), "version": 1},
        {"name": "version-2-parses", "section": "3", "hex": (b"\x89MUX\r\n" + struct.pack(">H", 2)).hex(),
         "version": 2},
    ],
    "invalid": [
        {"name": "http1-request", "section": "3", "hex": b"GET / HTTP/1.1\r\n".hex(), "error": "PROTOCOL_ERROR"},
        {"name": "http2-preface", "section": "3", "hex": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".hex(),
         "error": "PROTOCOL_ERROR"},
        {"name": "wrong-first-byte-alone", "section": "3", "hex": "16", "error": "PROTOCOL_ERROR"},
        {"name": "line-ends-rewritten", "section": "3", "hex": (b"\x89MUX\n\x00\x01").hex(),
         "error": "PROTOCOL_ERROR"},
    ],
}


def main():
    out = {
        "about": "mux v1 byte-exact test vectors, spec §14. Generated by generate.py from the spec's layouts.",
        "max_frame_size": MAX_PAYLOAD,
        "error_codes": ERR,
        "frame_types": TYPE,
        "settings": SETTING,
        "preface": prefaces,
        "valid": [{"name": n, "section": s, "hex": encode(f).hex(), "frame": f} for n, s, f in valid],
        "noncanonical": [{"name": n, "section": s, "hex": b.hex(), "frame": f} for n, s, b, f in noncanonical],
        "invalid": [{"name": n, "section": s, "hex": b.hex(), "error": e} for n, s, b, e in invalid],
    }
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "frames.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    # Every vector is also a seed of the frame_decode fuzz target.
    seeds = os.path.join(here, "..", "..", "fuzz", "seeds", "frame_decode")
    os.makedirs(seeds, exist_ok=True)
    for group in ("valid", "noncanonical", "invalid"):
        for vector in out[group]:
            with open(os.path.join(seeds, f"{group}-{vector['name']}"), "wb") as fh:
                fh.write(bytes.fromhex(vector["hex"]))


if __name__ == "__main__":
    main()
