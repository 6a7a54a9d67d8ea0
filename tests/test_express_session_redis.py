"""An Express app's sessions in Redis (connect-redis) recorded from a real redis-server
and replayed to a fresh process: every request after the login finds its session.

The session's JSON holds the cookie's ``originalMaxAge``, the milliseconds left when it
was saved: its max age, or a millisecond less now and then. One replay in ten wrote
``2591999999`` where the recording had ``2592000000``, missed, and the app lost its user
(``devbox.core.generated``: a clock reading, as for connect-pg-simple's). The session id
in the key (``sess:<id>``) binds as a generated value.
"""

from __future__ import annotations

import json
from pathlib import Path

from express_support import SEEN, express_flow
from loop_support import Loop
from redis_helpers import Mock, Recording, redis_server

from devbox.core import generated
from devbox.wire.files import default_redactor
from devbox.wire.redis import KIND


def test_an_express_session_in_redis_survives_replay(tmp_path: Path) -> None:
    flow = express_flow(tmp_path, "redis")
    loop = Loop()
    try:
        with redis_server(tmp_path / "redis") as server:
            rec = Recording(loop, server.port).start()
            recorded = flow(f"redis://127.0.0.1:{rec.port}")
            rec.close()
        stored = [KIND.redact(o, default_redactor()) for o in rec.stored]
        assert recorded == SEEN
        text = json.dumps(stored)
        assert '"EXPIRE"' in text and "originalMaxAge" in text
        for run in range(3):  # a fresh mock each time: three chances at the odd millisecond
            mock = Mock(loop, stored).start()
            try:
                replayed = flow(f"redis://127.0.0.1:{mock.port}")
            finally:
                mock.close()
            assert [m.explanation for m in mock.misses] == [], run
            assert replayed == SEEN
    finally:
        loop.close()


def test_original_max_age_is_a_clock_reading() -> None:
    saved = b'{"cookie":{"originalMaxAge":2592000000,"expires":"2027-01-07T04:44:26.425Z"}}'
    later = b'{"cookie":{"originalMaxAge":2591999999,"expires":"2027-01-07T05:10:02.001Z"}}'
    assert generated.Bindings().as_of_now([later], [saved])
    # a number under another name is data: another cart's total is another answer
    mine = b'{"cookie":{"maxAge":2591999999,"expires":"2027-01-07T05:10:02.001Z"}}'
    theirs = b'{"cookie":{"maxAge":2592000000,"expires":"2027-01-07T04:44:26.425Z"}}'
    assert not generated.Bindings().as_of_now([mine], [theirs])
