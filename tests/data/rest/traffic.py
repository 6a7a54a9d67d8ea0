"""The recording's client for json-server: reads, creates, updates and deletes, one after
another, so later responses depend on what earlier requests did.

usage: traffic.py BASE_URL"""

from __future__ import annotations

import json
import sys
import urllib.request

BASE = sys.argv[1].rstrip("/")


def send(method: str, path: str, body: object = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


send("GET", "/posts")
send("GET", "/posts/1")
send("POST", "/posts", {"title": "recorded", "views": 0})  # a random id: noise
send("GET", "/posts")  # carries it
send("PATCH", "/posts/1", {"views": 101})  # state: what follows sees 101
send("GET", "/posts/1")
send("PUT", "/posts/2", {"title": "devbox 2", "views": 201})
send("GET", "/posts?views_gt=150")
send("DELETE", "/comments/2")
send("GET", "/comments")
send("POST", "/comments", {"text": "new", "postId": "2"})
send("GET", "/comments?postId=2")
send("GET", "/profile")
send("GET", "/posts/1?_embed=comments")
