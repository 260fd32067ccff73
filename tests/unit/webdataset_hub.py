"""Test helpers for the webdataset sources: shards written by CLIP_benchmark's own converter, and a stand-in for
the Hugging Face hub on 127.0.0.1 that serves such a folder to the real ``huggingface_hub`` client (so the real
cache layout, offline resolution and "downloaded once" behaviour are what is tested), counting the files it sends.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "c0ffee" + "0" * 34  # the fake repo's only commit


def write_classification_shards(out: Path, classes: list[str], labels: list[int], max_count: int = 4,
                                image_format: str = "webp") -> Path:
    """``out/test/{0..}.tar`` + ``nshards.txt``, ``classnames.txt``, templates: CLIP_benchmark's converter itself."""
    from clip_benchmark.webdataset_builder import PIL_to_bytes, convert_dataset

    convert_dataset(_Listing(_images(labels), classes), "test", str(out), transform=PIL_to_bytes(image_format),
                    max_count=max_count, verbose=False)
    return out


def write_retrieval_shards(out: Path, captions: list[list[str]], max_count: int = 4,
                           image_format: str = "webp") -> Path:
    from clip_benchmark.webdataset_builder import PIL_to_bytes, convert_retrieval_dataset

    pairs = list(zip([image for image, _ in _images(list(range(len(captions))))], captions))
    convert_retrieval_dataset(pairs, "test", str(out), transform=PIL_to_bytes(image_format), max_count=max_count,
                              verbose=False)
    return out


class _Listing(list):
    """A list of (image, label) with the ``classes``/``templates`` attributes the converter writes out."""

    def __init__(self, items, classes):
        super().__init__(items)
        self.classes, self.templates = classes, ["a photo of a {c}."]


def _images(labels: list[int]):
    import random

    from PIL import Image

    rng = random.Random(0)
    out = []
    for label in labels:
        pixels = bytes(rng.randrange(256) for _ in range(24 * 20 * 3))
        out.append((Image.frombytes("RGB", (24, 20), pixels), label))
    return out


# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FakeHub:
    """Serves ``repos[repo_id] = folder`` at one commit (``main`` resolves to it) through the hub's HTTP API."""

    repos: dict[str, Path]
    downloads: list[str] = field(default_factory=list)  # "<repo name>/<path>" of each file sent
    requests: list[str] = field(default_factory=list)  # every request line

    def files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self.respond(head=True)

            def do_GET(self):
                self.respond(head=False)

            def respond(self, head: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                if parts[:2] == ["api", "datasets"] and len(parts) >= 6:
                    repo, what = f"{parts[2]}/{parts[3]}", parts[4]
                    if repo not in hub.repos:
                        return self.send(404, b'{"error": "Repository not found"}',
                                         {"X-Error-Code": "RepoNotFound"})
                    if what == "revision":
                        siblings = [{"rfilename": name} for name in hub.files(repo)]
                        return self.json({"id": repo, "sha": COMMIT, "siblings": siblings, "private": False})
                    if what == "tree":
                        tree = [{"type": "file", "path": name, "size": p.stat().st_size, "oid": blob_id(p)}
                                for name, p in hub.files(repo).items()]
                        return self.json(tree)
                if parts[0] == "datasets" and len(parts) >= 6 and parts[3] == "resolve":
                    repo, name = f"{parts[1]}/{parts[2]}", "/".join(parts[5:])
                    path = hub.files(repo).get(name) if repo in hub.repos else None
                    if path is None:
                        return self.send(404, b"", {"X-Error-Code": "EntryNotFound"})
                    data = path.read_bytes()
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{blob_id(path)}"',
                               "Content-Length": str(len(data))}
                    if not head:
                        hub.downloads.append(f"{parts[2]}/{name}")
                    return self.send(200, b"" if head else data, headers, length_set=True)
                self.send(404, b"")

            def json(self, value) -> None:
                self.send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

            def send(self, status: int, body: bytes, headers: dict | None = None, length_set: bool = False) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if not length_set:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def blob_id(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()
