"""The review page in a real headless Chromium: clicks, a shortcut, a reload."""

from __future__ import annotations

import json
import time


def _wait(page, expression: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {expression}")


def _click(page, selector: str) -> None:
    """A real mouse click (press and release) at the centre of ``selector``."""
    page.evaluate(
        f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})"
    )
    x, y = page.evaluate(
        f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
        ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent",
                  {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})  # fmt: skip


def _key(page, key: str) -> None:
    page.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": key, "text": key})
    page.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key})


def _pressed(page) -> dict[str, str]:
    return page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('section.slice')).map(c => "
        "[c.dataset.slice, Array.from(c.querySelectorAll('button[aria-pressed=\"true\"]'))"
        ".map(b => b.dataset.label).join(',')]))"
    )


def test_annotate_with_clicks_and_a_shortcut_then_reload(chromium, server):
    run = server.run
    page = chromium.open(server.url)
    _wait(page, "document.body.dataset.ready === '1'")
    order = page.evaluate(
        "Array.from(document.querySelectorAll('section.slice')).map(c => c.dataset.slice)"
    )
    assert sorted(order) == sorted(s.id for s in run.slices)
    ranks = [(run.slice(i).status == "weak", -run.slice(i).n_errors_in) for i in order]
    assert ranks == sorted(ranks)  # by severity, weak slices last
    # captions, checks and the mosaic are on the page
    first = f'section[data-slice="{order[0]}"]'
    assert "red background" in page.evaluate(f"document.querySelector('{first}').textContent")
    _wait(page, f"document.querySelectorAll('{first} .mosaic img').length > 0")

    # a click on the first slice's "spurious" button, a note typed and saved with Ctrl+Enter
    _click(page, f'{first} button[data-label="spurious"]')
    _wait(page, f"document.querySelector('{first}').dataset.label === 'spurious'")
    _click(page, f"{first} textarea")
    page.send("Input.insertText", {"text": "the model reads the background"})
    page.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Enter", "modifiers": 2})
    _wait(page, "document.getElementById('status').textContent.includes('version 2')")
    # "j" moves to the next slice, "3" marks it noisy
    _key(page, "j")
    assert page.evaluate("document.body.dataset.current") == order[1]
    _key(page, "3")
    _wait(
        page,
        f"document.querySelector('section[data-slice=\"{order[1]}\"]').dataset.label === 'noisy'",
    )

    saved = json.loads((run.path / "annotations.json").read_text())
    assert saved["run_id"] == run.info.run_id and saved["version"] == 3
    got = {a["slice_id"]: (a["label"], a["note"]) for a in saved["annotations"]}
    assert got == {
        order[0]: ("spurious", "the model reads the background"),
        order[1]: ("noisy", None),
    }

    assert page.errors == []
    page.events.clear()  # wait for the reload's load event, not the first one
    page.send("Page.reload", {"ignoreCache": True})
    chromium.wait_event(page, "Page.loadEventFired")
    _wait(page, "document.body.dataset.ready === '1'")
    pressed = _pressed(page)
    assert pressed[order[0]] == "spurious" and pressed[order[1]] == "noisy"
    assert all(pressed[s] == "" for s in order[2:])
    note = page.evaluate(f"document.querySelector('{first} textarea').value")
    assert note == "the model reads the background"
    assert page.errors == []  # no console error, no CSP violation
