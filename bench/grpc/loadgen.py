"""Unary gRPC load: ``python loadgen.py GENERATED_DIR TARGET N CONCURRENCY [SECONDS]``.

grpcio's asyncio client keeps CONCURRENCY ``SayHello`` calls in flight on one channel
until N calls are done or SECONDS have passed (bounded both ways); prints one JSON line:
calls, errors, seconds, calls/s, p50 and p99 in ms. TARGET may carry a scheme
(``http://127.0.0.1:PORT``, as devbox's ``{NAME}`` gives it): it is stripped."""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def main() -> None:
    gen, target, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
    sys.path.insert(0, gen)
    import grpc
    import routeguide_pb2 as pb
    import routeguide_pb2_grpc as pbg

    target = target.split("://", 1)[-1]
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pbg.GreeterStub(channel)
        request = pb.HelloRequest(name="bench")
        await stub.SayHello(request)  # connect first: not part of the figures
        left = n
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal left, errors
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                t = time.perf_counter()
                try:
                    await stub.SayHello(request)
                except grpc.RpcError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)

    print(
        json.dumps(
            {
                "calls": len(latencies),
                "errors": errors,
                "seconds": round(elapsed, 3),
                "rps": round(len(latencies) / elapsed, 1),
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
