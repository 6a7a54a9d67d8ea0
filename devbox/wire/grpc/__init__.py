"""gRPC (over HTTP/2 cleartext) as a dependency kind: ``protobuf`` decodes messages to
readable JSON without a schema, ``codec`` frames them, ``http2`` is the transport,
``store`` the recording's objects and the match index, ``mock`` and ``recorder`` the
per-connection objects the generic loops in ``devbox.wire.tcp`` drive."""
