"""The one file format between the grader and a student's kernel: JSON plus raw tensor bytes.

Instructor-only (copied read-only into the sandbox). The grader writes the inputs of each hidden
test with ``dump``; the kernel writes back its raw outputs with ``dump``; the grader reads them
with ``load``, which trusts nothing: the file size, the header size, every dtype (a short
allow-list), every shape and byte count are checked before a single tensor is built, and every
tensor is a fresh contiguous copy of bytes that really are in the file, each byte backing one tensor
at most (ranges in order, never overlapping; no views, no pickles, no zip archives), so a forged record
cannot make the grader allocate more than it read.

Layout: ``LFD13W1\\n`` | 8-byte little-endian header length | UTF-8 JSON header | tensor bytes.
Values: None, bool, int, float, str, list, dict with str keys, and tensors, written in the header
as ``{"__t__": [dtype, shape, offset]}``.
"""
from __future__ import annotations

import json
import math
import numbers
import os

import torch

MAGIC = b"LFD13W1\n"
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
          "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}
MAX_FILE = 32 << 20      # bytes of one record
MAX_HEADER = 1 << 20     # bytes of its JSON header
MAX_DEPTH = 12           # nesting of lists and dicts
MAX_DIMS = 8


class WireError(ValueError):
    """A record is malformed, too large or of a kind the grader does not accept."""


def _encode(value, blobs: list, depth: int = 0):
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else {"__f__": repr(value)}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        if t.dtype not in NAMES:
            return {"__other__": f"torch.Tensor of dtype {t.dtype}"}
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        offset = sum(len(b) for b in blobs)
        blobs.append(data)
        return {"__t__": [NAMES[t.dtype], list(t.shape), offset]}
    if isinstance(value, (list, tuple)):
        return [_encode(v, blobs, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v, blobs, depth + 1) for k, v in value.items()}
    return {"__other__": f"{type(value).__module__}.{type(value).__qualname__}"}


def dumps(value) -> bytes:
    blobs: list[bytes] = []
    header = json.dumps(_encode(value, blobs), allow_nan=False).encode()
    return MAGIC + len(header).to_bytes(8, "little") + header + b"".join(blobs)


def dump(value, path: str) -> None:
    data = dumps(value)
    tmp = f"{path}.part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Other:
    """A value the kernel could not express (an object of another type): kept by its type name only."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def _decode(node, body: memoryview, cursor: list, depth: int = 0):
    """``cursor[0]``: where the next tensor's bytes must start. Tensors lie one after the other in the
    order they appear in the header, as ``dumps`` writes them, so no byte can back two tensors: what is
    built is never more than the record's own bytes."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, body, cursor, depth + 1) for v in node]
    if not isinstance(node, dict):
        raise WireError("unexpected value")
    if "__t__" in node:
        spec = node["__t__"]
        if not (isinstance(spec, list) and len(spec) == 3 and spec[0] in DTYPES and isinstance(spec[1], list)
                and isinstance(spec[2], int) and not isinstance(spec[2], bool)):
            raise WireError("malformed tensor")
        dtype, shape, offset = DTYPES[spec[0]], spec[1], spec[2]
        if len(shape) > MAX_DIMS or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape):
            raise WireError("malformed tensor shape")
        numel = math.prod(shape)
        size = numel * torch.empty((), dtype=dtype).element_size()
        if offset < 0 or size > len(body) or offset + size > len(body):
            raise WireError("tensor bytes missing from the record")
        if offset != cursor[0]:
            raise WireError("tensor bytes overlap or are out of order")
        cursor[0] = offset + size
        data = bytearray(body[offset:offset + size])  # a copy: exactly the bytes that are in the file
        flat = torch.frombuffer(data, dtype=torch.uint8) if size else torch.empty(0, dtype=torch.uint8)
        return flat.view(dtype).reshape(shape).clone() if size else torch.empty(shape, dtype=dtype)
    if "__other__" in node:
        return Other(str(node["__other__"])[:200])
    if "__f__" in node:
        return float(node["__f__"]) if node["__f__"] in ("nan", "inf", "-inf") else None
    return {k: _decode(v, body, cursor, depth + 1) for k, v in node.items()}


def loads(data: bytes):
    if len(data) > MAX_FILE:
        raise WireError(f"record larger than {MAX_FILE >> 20} MB")
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise WireError("not a record")
    n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    start = len(MAGIC) + 8
    if n > MAX_HEADER or start + n > len(data):
        raise WireError("record header too large or truncated")
    try:
        header = json.loads(bytes(data[start:start + n]))
    except (ValueError, RecursionError) as err:
        raise WireError(f"record header is not valid JSON ({type(err).__name__})") from None
    return _decode(header, memoryview(data)[start + n:], [0])


def load(path: str):
    """Read a record written by ``dump``; raises ``WireError`` for anything unexpected."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if os.path.islink(path):
            raise WireError("a symbolic link, not a file") from None
        raise WireError(f"unreadable ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000):
            raise WireError("not a regular file")
        if st.st_size > MAX_FILE:
            raise WireError(f"record larger than {MAX_FILE >> 20} MB")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_FILE + 1)
    finally:
        os.close(fd)
    return loads(data)
