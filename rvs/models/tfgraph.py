"""Read a TensorFlow frozen graph (`GraphDef` .pb) without TensorFlow or the protobuf package.

A frozen graph is one protobuf message; this module decodes just the parts of the wire format
that a GraphDef uses (nodes, their inputs and attributes, constant tensors) into plain Python
objects, so rvs can take the weights out of a graph with numpy alone.

In:  the bytes of a `.pb` file (or its path).
Out: `list[Node]`, each with `name`, `op`, `inputs` and `attrs`; attribute values are Python
     scalars / strings / lists, `TensorShape` for shapes, and `numpy.ndarray` for tensors.

Wire format in one paragraph: a message is a sequence of fields; each field starts with a
varint key `(field_number << 3) | wire_type`. Wire type 0 is a varint, 1 is 8 fixed bytes,
2 is a length-prefixed byte string (sub-messages, strings, packed repeated numbers), 5 is 4
fixed bytes. Field numbers below come from TensorFlow's graph.proto, node_def.proto,
attr_value.proto, tensor.proto and tensor_shape.proto.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Wire types.
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

# TensorFlow DataType enum (types.proto) -> numpy dtype, for the types a graph's constants use.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),  # DT_FLOAT
    2: np.dtype(np.float64),  # DT_DOUBLE
    3: np.dtype(np.int32),  # DT_INT32
    4: np.dtype(np.uint8),  # DT_UINT8
    5: np.dtype(np.int16),  # DT_INT16
    6: np.dtype(np.int8),  # DT_INT8
    9: np.dtype(np.int64),  # DT_INT64
    10: np.dtype(np.bool_),  # DT_BOOL
    17: np.dtype(np.uint16),  # DT_UINT16
    19: np.dtype(np.float16),  # DT_HALF
    22: np.dtype(np.uint32),  # DT_UINT32
    23: np.dtype(np.uint64),  # DT_UINT64
}
DT_STRING = 7


class GraphDecodeError(ValueError):
    """The bytes are not a well-formed GraphDef (truncated file, wrong file type)."""


@dataclass
class TensorShape:
    """A `TensorShapeProto`: `dims` with -1 for unknown sizes; `unknown_rank` if even the rank is."""

    dims: tuple[int, ...] = ()
    unknown_rank: bool = False


@dataclass
class Node:
    """One `NodeDef`: `inputs` are producer names ("name", "name:1", or "^name" for control)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    device: str = ""


# ---------------------------------------------------------------------------------------------
# Wire-format primitives


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; returns (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphDecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise GraphDecodeError("varint longer than 10 bytes")


def _signed64(v: int) -> int:
    """int32/int64 fields are varints of the two's-complement 64-bit value."""
    return v - (1 << 64) if v >= 1 << 63 else v


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield `(field_number, wire_type, value)` for each field of one message.

    `value` is an int for varints, a memoryview slice for length-delimited fields (zero-copy:
    the 94 MB graph is never copied while walking it), and raw bytes for fixed32/fixed64.
    """
    buf = memoryview(buf)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == VARINT:
            val, pos = _varint(buf, pos)
        elif wt == LEN:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise GraphDecodeError(f"field {num}: length {n} runs past the end of the message")
            val, pos = buf[pos : pos + n], pos + n
        elif wt == FIXED32:
            val, pos = bytes(buf[pos : pos + 4]), pos + 4
        elif wt == FIXED64:
            val, pos = bytes(buf[pos : pos + 8]), pos + 8
        else:  # 3/4 are deprecated groups, 6/7 do not exist: not a GraphDef
            raise GraphDecodeError(f"unsupported wire type {wt} (field {num})")
        if pos > end:
            raise GraphDecodeError("message truncated")
        yield num, wt, val


def _repeated_varints(wt: int, val: Any) -> list[int]:
    """A repeated integer field arrives packed (one LEN field) or one varint per element."""
    if wt == VARINT:
        return [_signed64(val)]
    out, pos = [], 0
    while pos < len(val):
        v, pos = _varint(val, pos)
        out.append(_signed64(v))
    return out


def _repeated_fixed(val: Any, dtype: str) -> np.ndarray:
    """A repeated float/double field: packed little-endian bytes, or one fixed32/64 field per
    element; both arrive here as raw bytes, so one decode serves both."""
    return np.frombuffer(bytes(val), dtype=dtype).copy()


def _str(val: memoryview) -> str:
    return bytes(val).decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Messages


def decode_shape(buf: memoryview) -> TensorShape:
    """`TensorShapeProto`: dim = 2 (Dim: size = 1, name = 2), unknown_rank = 3."""
    dims, unknown = [], False
    for num, _wt, val in iter_fields(buf):
        if num == 2:
            size = 0  # proto3 omits zero-valued fields, so a missing size means 0
            for dnum, _dwt, dval in iter_fields(val):
                if dnum == 1:
                    size = _signed64(dval)
            dims.append(size)
        elif num == 3:
            unknown = bool(val)
    return TensorShape(tuple(dims), unknown)


def decode_tensor(buf: memoryview) -> np.ndarray:
    """`TensorProto` -> numpy array of its dtype and shape.

    Values come either as raw little-endian `tensor_content` (field 4; how big weights are
    stored) or in a typed repeated field (float_val = 5, double_val = 6, int_val = 7,
    string_val = 8, int64_val = 10, bool_val = 11, half_val = 13). In the typed form TensorFlow
    lets a constant list fewer values than its shape holds and repeats the last one (a scalar
    fill), so that is done here too.
    """
    dtype_enum, shape, content = 0, TensorShape(), None
    values: list = []
    for num, wt, val in iter_fields(buf):
        if num == 1:
            dtype_enum = val
        elif num == 2:
            shape = decode_shape(val)
        elif num == 4:
            content = bytes(val)
        elif num == 5:
            values.extend(_repeated_fixed(val, "<f4"))
        elif num == 6:
            values.extend(_repeated_fixed(val, "<f8"))
        elif num in (7, 10, 11):
            values.extend(_repeated_varints(wt, val))
        elif num == 13:  # half_val: float16 bit patterns carried in int32 varints
            values.extend(np.array(_repeated_varints(wt, val), np.uint16).view(np.float16))
        elif num == 8:
            values.append(bytes(val))
    dims = tuple(shape.dims)
    if dtype_enum == DT_STRING:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr.reshape(dims) if int(np.prod(dims)) == len(values) else arr
    if dtype_enum not in DTYPES:
        raise GraphDecodeError(f"unsupported tensor dtype enum {dtype_enum}")
    dtype = DTYPES[dtype_enum]
    count = int(np.prod(dims)) if dims else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype)
        if arr.size != count:
            raise GraphDecodeError(f"tensor_content holds {arr.size} values, shape {dims} needs {count}")
        return arr.reshape(dims)
    if not values:
        return np.zeros(dims, dtype)
    arr = np.asarray(values).astype(dtype)
    if arr.size < count:  # TF's scalar/last-value fill
        arr = np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype)])
    if arr.size != count:
        raise GraphDecodeError(f"tensor lists {arr.size} values, shape {dims} needs {count}")
    return arr.reshape(dims)


def _decode_list(buf: memoryview) -> list:
    """`AttrValue.ListValue`: s = 2, i = 3, f = 4, b = 5, type = 6, shape = 7, tensor = 8."""
    out: list = []
    for num, wt, val in iter_fields(buf):
        if num == 2:
            out.append(bytes(val))
        elif num == 3:
            out.extend(_repeated_varints(wt, val))
        elif num == 4:
            out.extend(float(x) for x in _repeated_fixed(val, "<f4"))
        elif num == 5:
            out.extend(bool(x) for x in _repeated_varints(wt, val))
        elif num == 6:
            out.extend(_repeated_varints(wt, val))
        elif num == 7:
            out.append(decode_shape(val))
        elif num == 8:
            out.append(decode_tensor(val))
    return out


def decode_attr(buf: memoryview) -> Any:
    """`AttrValue` (a oneof): list = 1, s = 2, i = 3, f = 4, b = 5, type = 6, shape = 7,
    tensor = 8, placeholder = 9, func = 10. Strings stay bytes (attrs like `padding` and
    `data_format` are ASCII; `_class` lists may not be); `type` is the DataType enum number."""
    value: Any = None
    for num, _wt, val in iter_fields(buf):
        if num == 1:
            value = _decode_list(val)
        elif num == 2:
            value = bytes(val)
        elif num == 3:
            value = _signed64(val)
        elif num == 4:
            value = float(np.frombuffer(val, "<f4")[0])
        elif num == 5:
            value = bool(val)
        elif num == 6:
            value = val
        elif num == 7:
            value = decode_shape(val)
        elif num == 8:
            value = decode_tensor(val)
        elif num == 9:
            value = _str(val)
        elif num == 10:
            value = {"func": _func_name(val)}
    return value


def _func_name(buf: memoryview) -> str:
    for num, _wt, val in iter_fields(buf):
        if num == 1:
            return _str(val)
    return ""


def decode_node(buf: memoryview) -> Node:
    """`NodeDef`: name = 1, op = 2, input = 3, device = 4, attr = 5 (map entries: key = 1,
    value = 2)."""
    node = Node(name="", op="")
    for num, _wt, val in iter_fields(buf):
        if num == 1:
            node.name = _str(val)
        elif num == 2:
            node.op = _str(val)
        elif num == 3:
            node.inputs.append(_str(val))
        elif num == 4:
            node.device = _str(val)
        elif num == 5:
            key, attr = "", None
            for enum, _ewt, evalue in iter_fields(val):
                if enum == 1:
                    key = _str(evalue)
                elif enum == 2:
                    attr = decode_attr(evalue)
            node.attrs[key] = attr
    return node


def parse_graph_def(data: bytes | memoryview) -> list[Node]:
    """Decode a serialized `GraphDef` (node = 1; library = 2 and versions = 3/4 are skipped)."""
    nodes = [decode_node(val) for num, _wt, val in iter_fields(data) if num == 1]
    if not nodes:
        raise GraphDecodeError("no nodes found: not a TensorFlow GraphDef")
    return nodes


def load_graph(path: str | os.PathLike) -> list[Node]:
    """Read and decode a frozen-graph `.pb` file; see `parse_graph_def`."""
    with open(path, "rb") as f:
        return parse_graph_def(f.read())


def constants(nodes: list[Node]) -> dict[str, np.ndarray]:
    """`{node name: value}` for every `Const` node (the weights of a frozen graph)."""
    return {n.name: n.attrs["value"] for n in nodes if n.op == "Const"}


# ---------------------------------------------------------------------------------------------
# Re-encoding (only what is needed to hand a graph to other readers)


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _encode_len_field(num: int, payload: bytes | memoryview) -> bytes:
    return _encode_varint(num << 3 | LEN) + _encode_varint(len(payload)) + bytes(payload)


def strip_control_inputs(data: bytes | memoryview) -> bytes:
    """Return the GraphDef `data` with every control-dependency input ("^name") removed.

    Control edges carry no values (in a frozen graph they only order a folded constant after
    the op it replaced), but OpenCV 4.x's TensorFlow importer rejects them ("nodeIds.find(inpName)
    != nodeIds.end()"). All other fields are copied byte for byte.
    """
    out = bytearray()
    for num, wt, val in iter_fields(data):
        if num != 1:
            if wt != LEN:  # GraphDef's other fields (library, versions) are all messages
                raise GraphDecodeError(f"unexpected GraphDef field {num} with wire type {wt}")
            out += _encode_len_field(num, val)
            continue
        node = bytearray()
        for fnum, fwt, fval in iter_fields(val):
            if fnum == 3 and bytes(fval[:1]) == b"^":
                continue
            if fwt != LEN:  # NodeDef's fields are all strings or messages
                raise GraphDecodeError(f"unexpected NodeDef field {fnum} with wire type {fwt}")
            node += _encode_len_field(fnum, fval)
        out += _encode_len_field(1, node)
    return bytes(out)
