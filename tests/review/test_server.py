"""The review server over real HTTP: the token gate, saves, conflicts, concurrency."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from tests.bad_inputs.harness import assert_untouched, snapshot


def _call(server, path, body=None, *, token=True, query=False, ctype="application/json"):
    url = server.url.split("?")[0] + path + (f"?token={server.token}" if query else "")
    headers = {"X-Failscope-Token": server.token} if token and not query else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = ctype
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_every_request_needs_the_token_and_a_refused_one_writes_nothing(server):
    run = server.run
    before = snapshot(run.path)
    save = {"slice_id": run.slices[0].id, "label": "core", "version": 0, "expect": None}
    for path, body in (("", None), ("api/state", None), ("api/mosaic/0/0", None),
                       ("api/annotations", save)):  # fmt: skip
        status, text, _ = _call(server, path, body, token=False)
        assert status == 403 and b"token" in text, (path, status)
    bad = server.token[:-1] + ("A" if server.token[-1] != "A" else "B")
    server_token, server.token = server.token, bad
    try:
        assert _call(server, "api/annotations", save)[0] == 403  # a wrong token
    finally:
        server.token = server_token
    assert_untouched(before, run.path)
    assert not (run.path / "annotations.json").exists()


def test_page_and_state_with_the_token(server):
    status, html, headers = _call(server, "", query=True)
    assert status == 200 and b"failscope review" in html
    assert "script-src 'nonce-" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"
    status, body, _ = _call(server, "api/state")
    assert status == 200 and json.loads(body) == {
        "version": 0,
        "annotations": {},
        "suggestions": {},
    }
    status, body, _ = _call(server, "api/mosaic/" + server.run.slices[0].id)
    thumbs = json.loads(body)["thumbs"]
    assert status == 200 and thumbs and all(t["uri"].startswith("data:image/") for t in thumbs)


def test_two_concurrent_saves_both_land(server):
    run = server.run
    ids = [s.id for s in run.slices][:2]
    barrier = threading.Barrier(2)
    results = {}

    def save(sid: str, label: str) -> None:
        barrier.wait()
        body = {"slice_id": sid, "label": label, "version": 0, "expect": None}
        results[sid] = _call(server, "api/annotations", body)[0]

    threads = [
        threading.Thread(target=save, args=(i, lab))
        for i, lab in zip(ids, ("core", "noisy"), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {ids[0]: 200, ids[1]: 200}
    saved = json.loads((run.path / "annotations.json").read_text())
    assert saved["version"] == 2
    assert {a["slice_id"]: a["label"] for a in saved["annotations"]} == {
        ids[0]: "core",
        ids[1]: "noisy",
    }


def test_a_stale_save_of_the_same_slice_gets_409_and_the_latest_state(server):
    sid = server.run.slices[0].id
    ok = _call(server, "api/annotations", {"slice_id": sid, "label": "core", "version": 0,
                                           "expect": None})  # fmt: skip
    assert ok[0] == 200
    # a second tab still shows version 0 and no annotation for the slice
    status, body, _ = _call(server, "api/annotations", {"slice_id": sid, "label": "spurious",
                                                        "version": 0, "expect": None})  # fmt: skip
    reply = json.loads(body)
    assert status == 409 and reply["state"]["version"] == 1
    assert reply["state"]["annotations"][sid]["label"] == "core"
    saved = json.loads((server.run.path / "annotations.json").read_text())
    assert [a["label"] for a in saved["annotations"]] == ["core"] and saved["version"] == 1


def test_bad_requests_are_refused_with_one_line(server):
    run = server.run
    before = snapshot(run.path)
    cases = [
        ({"slice_id": "99/0", "label": "core"}, 400, "no slice '99/0'"),
        ({"slice_id": run.slices[0].id, "label": "wrong"}, 400, "not one of"),
        ({"slice_id": run.slices[0].id, "label": "core", "version": "x"}, 400, "version"),
        ({"slice_id": 3, "label": "core"}, 400, "slice_id"),
        ({"slice_id": run.slices[0].id, "label": "core", "note": "x" * 5000}, 400, "note"),
    ]
    for body, code, text in cases:
        status, reply, _ = _call(server, "api/annotations", body)
        assert status == code and text in json.loads(reply)["error"], (body, reply)
    status, _, _ = _call(server, "api/annotations", {"slice_id": "0/0"}, ctype="text/plain")
    assert status == 415
    assert _call(server, "api/mosaic/99/0")[0] == 400
    assert_untouched(before, run.path)


def test_a_slice_whose_training_labels_moved_is_suggested_noisy(tmp_path):
    import failscope
    from failscope import load_run
    from failscope.review.server import ReviewServer
    from tests.retrain.synthetic import make_noisy_problem, make_run

    problem = make_noisy_problem(seed=0, n=6000)  # 90% of the 0s with u labelled 1 in train
    run = load_run(make_run(tmp_path / "run", problem))
    srv = ReviewServer(run)  # not started: its state only
    sugg = srv.state()["suggestions"]
    assert len(sugg) == 1
    ((sid, s),) = sugg.items()
    members = run.members(run.slice(sid)) & problem["attr"]
    assert members.sum() > 0.5 * (problem["attr"] & (problem["split"] != "train")).sum()
    assert s["label"] == "noisy" and not s["neighbours"]
    assert s["reason"].startswith("training labels moved") and "more labelled 1" in s["reason"]
    failscope.annotate(run, sid, "core")  # a person's verdict replaces the suggestion
    assert sid not in srv.state()["suggestions"]
