"""The HTTP server: predictions equal the artifact's, limits answer 4xx, batching merges concurrent requests."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

from tests.conftest import make_images
from warmstart.artifact import load_artifact, save_artifact
from warmstart.data import from_arrays
from warmstart.errors import ArtifactError
from warmstart.run import fit_run
from warmstart.techniques import get_technique

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@pytest.fixture
def text_artifact(tiny_bert_dir, text_data, text_test, tmp_path):
    out = tmp_path / "art"
    fit_run(text_data, test=text_test, backbone=str(tiny_bert_dir), params={"progress": False}, output=out)
    return out


def client(artifact, **limits):
    from fastapi.testclient import TestClient

    from warmstart.serve import Limits, create_app

    return TestClient(create_app(artifact, Limits(**limits)))


def test_text_server_predicts_what_the_artifact_predicts(text_artifact):
    model = load_artifact(text_artifact)
    texts = ["the team won the match", "soup and bread for dinner", "a new chip"]
    with client(text_artifact) as c:
        assert c.get("/health").json() == {"status": "ok"}
        info = c.get("/info").json()
        assert info["labels"] == list(model.classes_) and info["modality"] == "text"
        assert 0 <= info["test_metrics"]["accuracy"] <= 1
        r = c.post("/predict", json={"texts": texts})
        assert r.status_code == 200
        preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == list(model.predict(texts))
    got = np.array([[p["probabilities"][k] for k in model.classes_] for p in preds])
    np.testing.assert_allclose(got, model.predict_proba(texts), atol=1e-5)


def test_text_limits_answer_4xx_with_the_limit_named(text_artifact):
    with client(text_artifact, max_inputs=4, max_text_chars=50, max_body_bytes=2000) as c:
        assert c.post("/predict", json={"texts": ["a"] * 5}).status_code == 422
        r = c.post("/predict", json={"texts": ["x" * 51]})
        assert r.status_code == 422 and "50" in r.text
        assert c.post("/predict", json={"texts": []}).status_code == 422
        assert c.post("/predict", json={"texts": "not a list"}).status_code == 422
        assert c.post("/predict", json={"texts": [1, None]}).status_code == 422
        assert (
            c.post("/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code
            == 422
        )
        assert (
            c.post(
                "/predict", content=b"\xff\xfe\x00", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        r = c.post("/predict", content=b"x" * 5000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "2000" in r.json()["detail"]

        def chunks():  # no content-length: counted as it arrives
            for _ in range(10):
                yield b"y" * 500

        assert (
            c.post("/predict", content=chunks(), headers={"content-type": "application/json"}).status_code
            == 413
        )
        # found by fuzzing: bytes that are not UTF-8 in a validation error, and lone surrogates, were 500s
        r = c.post("/predict", files={"files": ("a.png", b"\x89PNG\r\n", "image/png")})
        assert r.status_code == 422
        r = c.post(
            "/predict", content=b'{"texts": ["ok \\ud800"]}', headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and ("surrogate" in r.text or "unicode" in r.text)
        schema = c.get("/openapi.json").json()
        assert {"400", "413", "422"} <= set(schema["paths"]["/predict"]["post"]["responses"])
        body = schema["components"]["schemas"]["TextRequest"]["properties"]["texts"]
        assert body["maxItems"] == 4 and body["items"]["maxLength"] == 50
        assert c.get("/health").status_code == 200  # still serving


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_image_server_uploads_corrupt_files_and_pixel_limit(tiny_image_backbone, tmp_path):
    x, y = make_images(6, size=32)
    est = get_technique("probe", backbone=tiny_image_backbone, progress=False).fit(from_arrays(x, y))
    save_artifact(est, tmp_path / "img", embed_backbone=True)
    xt, _ = make_images(1, size=32, seed=3)
    with client(tmp_path / "img", max_image_pixels=40 * 40) as c:
        files = [("files", (f"{i}.png", png(a), "image/png")) for i, a in enumerate(xt)]
        r = c.post("/predict", files=files)
        assert r.status_code == 200
        assert [p["label"] for p in r.json()["predictions"]] == list(est.predict(xt))
        r = c.post("/predict", files=[("files", ("bad.png", b"\x89PNG not really", "image/png"))])
        assert r.status_code == 400 and "bad.png" in r.json()["detail"]
        big = np.zeros((60, 60, 3), np.uint8)
        r = c.post("/predict", files=[("files", ("big.png", png(big), "image/png"))])
        assert r.status_code == 413 and "big.png" in r.json()["detail"]
        assert c.post("/predict", json={"texts": ["a"]}).status_code == 422


def test_batcher_merges_concurrent_requests():
    from warmstart.serve import Batcher

    calls = []

    def proba(inputs):
        calls.append(len(inputs))
        return np.array([[float(v), 1.0 - float(v)] for v in inputs])

    async def main():
        b = Batcher(proba, max_rows=64, wait_s=0.05)
        await b.start()
        outs = await asyncio.gather(*(b.submit([i / 10, i / 20]) for i in range(8)))
        await b.stop()
        return outs

    outs = asyncio.run(main())
    for i, o in enumerate(outs):
        np.testing.assert_allclose(o[:, 0], [i / 10, i / 20])
    assert sum(calls) == 16 and len(calls) < 8


def test_batcher_runs_long_text_queues_in_length_sorted_chunks():
    from warmstart.serve import Batcher

    seen = []

    def proba(texts):
        seen.append(list(texts))
        return np.array([[len(t), -len(t)] for t in texts], dtype=float)

    texts = ["x" * n for n in (5, 40, 1, 33, 7, 2, 19, 8, 60, 3)]
    out = Batcher(proba, max_rows=64, wait_s=0.0, chunk=4)._predict(texts)
    np.testing.assert_array_equal(out[:, 0], [len(t) for t in texts])  # back in request order
    assert [len(c) for c in seen] == [4, 4, 2] and max(map(len, seen[0])) <= min(map(len, seen[1]))


def test_server_refuses_tampered_and_pickled_artifacts(text_artifact):
    (text_artifact / "extra.pt").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(ArtifactError, match="pickle"):
        client(text_artifact)
    (text_artifact / "extra.pt").unlink()
    (text_artifact / "labels.json").write_text('["a", "b", "c"]')
    with pytest.raises(ArtifactError, match="differ"):
        client(text_artifact)


def test_the_servers_pixel_limit_follows_the_one_setting(monkeypatch):
    from warmstart.serve import SERVER_MAX_IMAGE_PIXELS, Limits

    monkeypatch.delenv("WARMSTART_MAX_IMAGE_PIXELS", raising=False)
    assert Limits().max_image_pixels == SERVER_MAX_IMAGE_PIXELS == 4096 * 4096  # stricter than fit's 64M
    monkeypatch.setenv("WARMSTART_MAX_IMAGE_PIXELS", "1000")
    assert Limits().max_image_pixels == 1000  # lowering the one setting lowers the server's too
    assert Limits(max_image_pixels=50).max_image_pixels == 50
