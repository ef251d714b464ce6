"""torch threads of the predict and embed passes: the default, --threads, restoring."""

from __future__ import annotations

import pytest
import torch

from failscope._threads import MAX_DEFAULT_THREADS, default_threads, torch_threads


@pytest.mark.parametrize(
    ("cores", "workers", "want"),
    [(1, 0, 1), (2, 0, 1), (2, 1, 1), (4, 0, 2), (4, 1, 1), (8, 0, 4), (8, 2, 2), (64, 0, 4),
     (64, 8, 4)],
)  # fmt: skip
def test_default_threads(monkeypatch, cores, workers, want):
    monkeypatch.setattr("failscope._threads.usable_cores", lambda: cores)
    assert default_threads(workers) == want <= MAX_DEFAULT_THREADS


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(3) as n:
        assert n == 3 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0 must be >= 1"):
        with torch_threads(0):
            pass
    assert torch.get_num_threads() == before


def test_discover_runs_its_passes_with_the_threads_asked_for(
    image_dataset, channel_classifier, tiny_clip, tmp_path
):
    from failscope.pipeline import discover

    seen: dict[str, set[int]] = {}

    def progress(stage, done, total):
        seen.setdefault(stage, set()).add(torch.get_num_threads())

    torch.set_num_threads(2)
    discover(
        image_dataset.manifest, model=channel_classifier, clip=str(tiny_clip.config),
        clip_pretrained=None, clip_checkpoint=tiny_clip.checkpoint, out=tmp_path / "run",
        threads=1, progress=progress, captions=False, report=False,
    )  # fmt: skip
    assert seen == {"predict": {1}, "embed": {1}}
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
