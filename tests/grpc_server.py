"""The real gRPC dependency of the gRPC tests and benchmark: a grpcio server of
tests/data/grpc/routeguide.proto (route guide's four call shapes and hello world's
greeter). Run as ``python grpc_server.py GENERATED_DIR PORT [CERT KEY]`` (with a
certificate chain and its key: TLS only); prints ``ready`` once it listens on
127.0.0.1:PORT, stops on SIGTERM. ``ROUTEGUIDE_DB=v2`` in its environment serves a
changed database (the first feature renamed, NOT_FOUND at 0,0): the service after an
edit, for the replay tests."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Any

FEATURES = [
    ("Patriots Path, Mendham, NJ 07945, USA", 407838351, -746143763),
    ("101 New Jersey 10, Whippany, NJ 07981, USA", 408122808, -743999179),
    ("U.S. 6, Shohola, PA 18458, USA", 413628156, -749015468),
    ("5 Conners Road, Kingston, NY 12401, USA", 419999544, -740371136),
]
DB = os.environ.get("ROUTEGUIDE_DB", "v1")
if DB == "v2":
    FEATURES[0] = ("Patriots Path, Mendham, NJ 07945", *FEATURES[0][1:])


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    import grpc

    # ROUTEGUIDE_COMPRESSION=gzip: every answer compressed, as a server configured so sends
    gzip = os.environ.get("ROUTEGUIDE_COMPRESSION") == "gzip"
    compression = grpc.Compression.Gzip if gzip else None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), compression=compression)
    add_services(server)
    if len(sys.argv) > 4:
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(f"127.0.0.1:{sys.argv[2]}", creds)
    else:
        server.add_insecure_port(f"127.0.0.1:{sys.argv[2]}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    server.stop(0)


def add_services(server: Any) -> None:
    import routeguide_pb2_grpc as pbg

    pbg.add_RouteGuideServicer_to_server(route_guide(), server)
    pbg.add_GreeterServicer_to_server(greeter(), server)


def _nowhere(context: Any) -> None:
    import grpc

    if DB == "v2":
        context.abort(grpc.StatusCode.NOT_FOUND, "nothing at 0,0")
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no feature at 0,0: über-nowhere")


def route_guide() -> Any:
    import routeguide_pb2 as pb
    import routeguide_pb2_grpc as pbg

    def feature_at(point: Any) -> Any:
        for name, lat, lon in FEATURES:
            if point.latitude == lat and point.longitude == lon:
                return pb.Feature(name=name, location=point)
        return pb.Feature(name="", location=point)

    class RouteGuide(pbg.RouteGuideServicer):  # type: ignore[misc]
        def GetFeature(self, request: Any, context: Any) -> Any:
            if request.latitude == 0 and request.longitude == 0:
                _nowhere(context)
            context.set_trailing_metadata((("x-feature-db", DB),))
            return feature_at(request)

        def ListFeatures(self, request: Any, context: Any) -> Any:
            lo, hi = request.lo, request.hi
            for name, lat, lon in FEATURES:
                if lo.latitude <= lat <= hi.latitude and lo.longitude <= lon <= hi.longitude:
                    time.sleep(0.01)  # a stream whose spacing the mock replays
                    yield pb.Feature(name=name, location=pb.Point(latitude=lat, longitude=lon))

        def RecordRoute(self, request_iterator: Any, context: Any) -> Any:
            points = features = 0
            for point in request_iterator:
                points += 1
                features += bool(feature_at(point).name)
            return pb.RouteSummary(point_count=points, feature_count=features, distance=points * 7)

        def RouteChat(self, request_iterator: Any, context: Any) -> Any:
            seen: list[Any] = []
            for note in request_iterator:
                for prev in seen:
                    if prev.location == note.location:
                        yield prev
                seen.append(note)

    return RouteGuide()


def greeter() -> Any:
    import routeguide_pb2 as pb
    import routeguide_pb2_grpc as pbg

    class Greeter(pbg.GreeterServicer):  # type: ignore[misc]
        def SayHello(self, request: Any, context: Any) -> Any:
            context.send_initial_metadata((("x-served-by", "greeter-1"),))
            return pb.HelloReply(message=f"Hello, {request.name}!")

    return Greeter()


if __name__ == "__main__":
    main()
