"""Messages with the service's descriptors: field names instead of numbers.

A dependency's ``protos`` (profile) names a folder of ``.proto`` files, compiled here with
grpcio-tools (in-process, into a descriptor set), or a descriptor set file (``protoc
--descriptor_set_out=FILE --include_imports``, ``buf build -o FILE``). A message of a
method the descriptors know is then stored as protobuf's JSON mapping with the ``.proto``
field names (``{"name": "Ada", "location": {"latitude": 1}}``), provided that form
encodes back to exactly the bytes on the wire (unknown fields, a field order protobuf
would not write... keep the schemaless form, ``devbox.wire.grpc.protobuf``).

protobuf and grpcio-tools are optional: ``pip install 'devbox[grpc]'``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.errors import ConfigError


def _protobuf() -> Any:
    try:
        from google.protobuf import (  # type: ignore[import-untyped]
            descriptor_pb2,
            descriptor_pool,
            json_format,
            message_factory,
        )
    except ImportError:
        raise ConfigError(
            "protos needs the protobuf package",
            hint="pip install 'devbox[grpc]' (protobuf and grpcio-tools)",
        ) from None
    return descriptor_pb2, descriptor_pool, json_format, message_factory


def compile_folder(folder: Path) -> bytes:
    """Every ``.proto`` under ``folder`` as one descriptor set (imports included)."""
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            f"{folder}: compiling .proto files needs grpcio-tools",
            hint="pip install 'devbox[grpc]', or name a descriptor set file instead",
        ) from None
    import importlib.resources

    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.proto"))
    if not files:
        raise ConfigError(f"{folder}: no .proto files in this folder", field="protos")
    include = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="devbox-protos-") as tmp:
        out = Path(tmp) / "set.binpb"
        code = protoc.main(
            [
                "protoc",
                f"-I{folder}",
                f"-I{include}",
                f"--descriptor_set_out={out}",
                "--include_imports",
                *files,
            ]
        )
        if code != 0 or not out.exists():
            raise ConfigError(
                f"{folder}: protoc could not compile these .proto files (its errors are above)",
                field="protos",
            )
        return out.read_bytes()


def load(path: Path) -> Schema:
    if path.is_dir():
        return Schema.from_descriptor_set(compile_folder(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the descriptors: {exc.strerror}", field="protos"
        ) from None
    return Schema.from_descriptor_set(data, str(path))


@dataclass
class Schema:
    pool: Any
    _methods: dict[str, tuple[Any, Any] | None] = field(default_factory=dict)

    @classmethod
    def from_descriptor_set(cls, data: bytes, source: str = "protos") -> Schema:
        descriptor_pb2, descriptor_pool, _json, _factory = _protobuf()
        files = descriptor_pb2.FileDescriptorSet()
        try:
            files.ParseFromString(data)
            pool = descriptor_pool.DescriptorPool()
            for f in files.file:
                pool.Add(f)
        except Exception as exc:  # protobuf raises several unrelated types here
            raise ConfigError(
                f"{source}: not a protobuf descriptor set ({exc})", field="protos"
            ) from None
        return cls(pool)

    def classes(self, path: str) -> tuple[Any, Any] | None:
        """(request class, response class) of ``/package.Service/Method``, if known."""
        if path in self._methods:
            return self._methods[path]
        _pb2, _pool, _json, message_factory = _protobuf()
        service, _, method = path.lstrip("/").partition("/")
        found: tuple[Any, Any] | None = None
        try:
            m = self.pool.FindServiceByName(service).FindMethodByName(method)
        except KeyError:
            m = None
        if m is not None:
            found = (
                message_factory.GetMessageClass(m.input_type),
                message_factory.GetMessageClass(m.output_type),
            )
        self._methods[path] = found
        return found

    def decode(self, path: str, response: bool, payload: bytes) -> dict[str, Any] | None:
        """The named JSON of a message, or None (unknown method, or a form that would not
        encode back to ``payload``)."""
        classes = self.classes(path)
        if classes is None:
            return None
        _pb2, _pool, json_format, _factory = _protobuf()
        cls = classes[response]
        try:
            msg = cls.FromString(payload)
            value: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
            back = json_format.ParseDict(value, cls()).SerializeToString()
        except Exception:  # a message that does not parse as this type: keep it schemaless
            return None
        return value if back == payload else None

    def encode(self, path: str, response: bool, value: dict[str, Any], where: str) -> bytes:
        from devbox.wire.grpc.protobuf import ProtobufError

        classes = self.classes(path)
        if classes is None:
            raise ProtobufError(f"the descriptors do not know {path}", where)
        _pb2, _pool, json_format, _factory = _protobuf()
        try:
            msg = json_format.ParseDict(value, classes[response]())
        except json_format.ParseError as exc:
            raise ProtobufError(str(exc), where) from None
        data: bytes = msg.SerializeToString()
        return data
