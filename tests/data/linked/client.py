"""The recording's client: one quote after another (a sequential client)."""

import sys
import urllib.request

for item in ("a", "b", "c", "d"):
    urllib.request.urlopen(f"{sys.argv[1]}/quote?item={item}", timeout=10).read()
