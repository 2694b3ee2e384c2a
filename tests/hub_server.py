"""A local stand-in for the Hugging Face Hub on 127.0.0.1: the file and API URLs the real huggingface_hub
client asks for (resolve/<revision>/<file>, /api/models/<id>[/revision/<rev>], /api/models?search=), and the
uploads it makes (api/repos/create, preupload, commit: every file sent in the commit itself, as the Hub asks
for small files),
with the Hub's own error headers for gated, missing and not-found cases. Point HF_ENDPOINT at `url`."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    params: int | None = None
    revisions: tuple[str, ...] = ("main",)


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    token: str = "hf_test_token"   # the token that opens gated repos and may create and write repos
    requests: list[str] = field(default_factory=list)
    reject_commit: tuple[int, str] | None = None  # (status, message) the next commits are answered with

    def add(self, repo_id: str, config: dict[str, Any] | None, gated: bool = False, params: int | None = None,
            extra: dict[str, bytes] | None = None) -> None:
        files = dict(extra or {})
        if config is not None:
            files["config.json"] = json.dumps(config).encode()
        self.repos[repo_id] = Repo(files, gated, params)

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(head=True)

            def do_GET(self) -> None:
                self.answer(head=False)

            def do_POST(self) -> None:
                url = urlparse(self.path)
                path = unquote(url.path).strip("/")
                hub.requests.append(f"POST /{path}")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self.error(401, "Unauthorized", "Invalid credentials in Authorization header")
                if path == "api/validate-yaml":  # the Hub checks a card's metadata before a commit
                    content = json.loads(body)["content"]
                    head = content.split("---")[1] if content.startswith("---") else ""
                    problems = [{"message": f'"base_model" with value "{v.strip()}" is not a valid model ID.'}
                                for k, _, v in (line.partition(":") for line in head.splitlines())
                                if k.strip() == "base_model" and v.strip() not in hub.repos]
                    status = 400 if problems else 200
                    answer = json.dumps({"errors": problems} if problems else {"warnings": []}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return None
                if path == "api/repos/create":
                    asked = json.loads(body)
                    rid = f"{asked['organization']}/{asked['name']}" if asked.get("organization") else asked["name"]
                    base = f"http://{self.headers['Host']}"
                    if rid in hub.repos:
                        return self.error(409, "RepoExists", "You already created this model repo")
                    hub.repos[rid] = Repo({})
                    return self.send(json.dumps({"url": f"{base}/{rid}", "name": rid}).encode(), False,
                                     "application/json")
                parts = path.split("/")
                if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
                    rid = "/".join(parts[2:4])
                    repo = hub.repos.get(rid)
                    if repo is None:
                        return self.error(404, "RepoNotFound", "Repository not found")
                    if parts[4] == "preupload":
                        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                 for f in json.loads(body)["files"]]
                        return self.send(json.dumps({"files": files, "commitOid": COMMIT}).encode(), False,
                                         "application/json")
                    if hub.reject_commit is not None:
                        return self.error(hub.reject_commit[0], "BadRequest", hub.reject_commit[1])
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            value = item["value"]
                            content = value["content"]
                            repo.files[value["path"]] = (base64.b64decode(content) if value.get("encoding") == "base64"
                                                         else content.encode())
                    base = f"http://{self.headers['Host']}"
                    return self.send(json.dumps({"commitUrl": f"{base}/{rid}/commit/{COMMIT}", "commitOid": COMMIT,
                                                 "pullRequestUrl": None}).encode(), False, "application/json")
                self.error(404, "RepoNotFound", "Not found")

            def error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def allowed(self, repo: Repo) -> bool:
                return not repo.gated or self.headers.get("Authorization") == f"Bearer {hub.token}"

            def send(self, body: bytes, head: bool, content_type: str = "application/octet-stream",
                     etag: str | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag or hashlib.sha256(body).hexdigest()}"')
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def answer(self, head: bool) -> None:
                url = urlparse(self.path)
                path = unquote(url.path).strip("/")
                hub.requests.append(f"{self.command} /{path}")
                if path == "api/models":
                    search = parse_qs(url.query).get("search", [""])[0].lower()
                    found = [{"id": rid, "modelId": rid, "gated": r.gated, "downloads": 100,
                              **({"safetensors": {"parameters": {"BF16": r.params}, "total": r.params}}
                                 if r.params else {})}
                             for rid, r in hub.repos.items() if search in rid.lower()]
                    return self.send(json.dumps(found).encode(), head, "application/json")
                if path.startswith("api/models/"):
                    parts = path[len("api/models/"):].split("/")
                    rid = "/".join(parts[:2])
                    repo = hub.repos.get(rid)
                    if repo is None:
                        return self.error(404, "RepoNotFound", "Repository not found")
                    info = {"id": rid, "modelId": rid, "sha": COMMIT, "gated": "manual" if repo.gated else False,
                            "private": False, "siblings": [{"rfilename": f} for f in repo.files]}
                    if repo.params:
                        info["safetensors"] = {"parameters": {"BF16": repo.params}, "total": repo.params}
                    return self.send(json.dumps(info).encode(), head, "application/json")
                parts = path.split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    rid, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    repo = hub.repos.get(rid)
                    if repo is None:
                        return self.error(404, "RepoNotFound", "Repository not found")
                    if not self.allowed(repo):
                        return self.error(401, "GatedRepo", "Access to this model is restricted")
                    if revision not in repo.revisions and revision != COMMIT:
                        return self.error(404, "RevisionNotFound", "Invalid rev id")
                    if filename not in repo.files:
                        return self.error(404, "EntryNotFound", "Entry not found")
                    return self.send(repo.files[filename], head)
                self.error(404, "RepoNotFound", "Not found")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
