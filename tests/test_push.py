"""``warmstart push`` against a local fake hub endpoint (a real HTTP server on loopback that answers the three
calls huggingface_hub makes: create the repository, ask how to upload each file, commit); never the network."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from huggingface_hub import constants

from warmstart.artifact import save_artifact
from warmstart.errors import ArtifactError, ParameterError, PushError
from warmstart.push import push_artifact
from warmstart.techniques import get_technique

from .conftest import make_sentences


class FakeHub(BaseHTTPRequestHandler):
    created: list[dict] = []
    commits: list[dict] = []
    cards: list[str] = []
    status = 200

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        host = f"http://{self.headers['Host']}"
        if self.status != 200:
            return self._reply(self.status, {"error": "Invalid credentials in Authorization header"})
        if self.path == "/api/validate-yaml":  # the client checks the card's metadata before it commits
            content = json.loads(body)["content"]
            FakeHub.cards.append(content)
            try:
                yaml.safe_load(content.split("---\n")[1])
            except Exception as e:
                return self._reply(400, {"errors": [{"message": str(e)}]})
            return self._reply(200, {"errors": [], "warnings": []})
        if self.path == "/api/repos/create":
            payload = json.loads(body)
            FakeHub.created.append({**payload, "auth": self.headers.get("Authorization")})
            return self._reply(200, {"url": f"{host}/{payload['organization']}/{payload['name']}"})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._reply(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if "/commit/" in self.path:
            lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
            files = {
                x["value"]["path"]: base64.b64decode(x["value"]["content"])
                for x in lines
                if x["key"] == "file"
            }
            FakeHub.commits.append({"path": self.path, "header": lines[0]["value"], "files": files})
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            return self._reply(200, {"commitUrl": f"{host}/{repo}/commit/abc123", "commitOid": "abc123"})
        return self._reply(404, {"error": f"no route {self.path}"})


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; this server is local
    FakeHub.created, FakeHub.commits, FakeHub.cards, FakeHub.status = [], [], [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def artifact(tiny_bert_dir, tmp_path):
    texts, labels = make_sentences(6)
    est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(texts, labels)
    return save_artifact(est, tmp_path / "art", metrics={"accuracy": 0.9, "macro_f1": 0.9, "n": 10})


def test_push_uploads_every_file_in_one_commit(hub, artifact):
    url = push_artifact(artifact, "me/my-model", token="hf_test", endpoint=hub)
    assert url == f"{hub}/me/my-model/commit/abc123"
    assert FakeHub.created == [
        {"name": "my-model", "organization": "me", "visibility": "public", "auth": "Bearer hf_test"}
    ]
    (commit,) = FakeHub.commits
    assert commit["path"] == "/api/models/me/my-model/commit/main"
    assert commit["header"]["summary"] == "Upload warmstart artifact art"
    on_disk = {p.relative_to(artifact).as_posix(): p.read_bytes() for p in artifact.rglob("*") if p.is_file()}
    assert commit["files"] == on_disk and "README.md" in on_disk and "manifest.json" in on_disk
    assert FakeHub.cards == [on_disk["README.md"].decode()]  # its metadata was validated, and it parsed


def test_push_refuses_a_damaged_artifact_before_any_request(hub, artifact):
    (artifact / "labels.json").write_text('["x"]')
    with pytest.raises(ArtifactError, match="labels.json"):
        push_artifact(artifact, "me/my-model", token="hf_test", endpoint=hub)
    assert FakeHub.created == [] and FakeHub.commits == []


def test_push_errors_say_what_to_do(hub, artifact, monkeypatch):
    FakeHub.status = 401
    with pytest.raises(PushError, match=r"refused the upload.*HTTP 401.*hf auth login"):
        push_artifact(artifact, "me/my-model", token="hf_bad", endpoint=hub)
    with pytest.raises(ParameterError, match="not a valid hub repository id"):
        push_artifact(artifact, "me/two/slashes", token="hf_test", endpoint=hub)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PushError, match="HF_HUB_OFFLINE is set"):
        push_artifact(artifact, "me/my-model", token="hf_test", endpoint=hub)


def test_cli_push(hub, artifact, monkeypatch, capsys):
    from warmstart.cli import main

    monkeypatch.setenv("HF_TOKEN", "hf_env")
    monkeypatch.setattr(constants, "ENDPOINT", hub)
    assert main(["push", str(artifact), "me/cli-model", "--private", "--message", "first"]) == 0
    assert f"pushed {artifact} to me/cli-model: {hub}/me/cli-model/commit/abc123" in capsys.readouterr().out
    assert FakeHub.created[0]["visibility"] == "private" and FakeHub.created[0]["auth"] == "Bearer hf_env"
    assert FakeHub.commits[0]["header"]["summary"] == "first"
