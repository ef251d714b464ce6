"""Captions and zero-shot evaluation for the world CLIP."""

from __future__ import annotations

from typing import Any

import numpy as np

from failscope.world.attributes import CLASS_NAMES, FAMILIES, FAMILY_PHRASES

__all__ = [
    "CLASS_PROMPT",
    "compose_caption",
    "images_to_tensor",
    "zero_shot_accuracy",
]

#: Prompt used for zero-shot classification of the digit.
CLASS_PROMPT = "a photo of a {cls}"
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def images_to_tensor(images: np.ndarray) -> Any:
    """Turn uint8 images (n, 32, 32, 3) into the normalised float tensor (n, 3, 32, 32).

    Equivalent to the open_clip ``preprocess`` of the world CLIP applied to
    each image (its resize and centre crop are identities at 32x32).
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(_OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_OPENAI_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def compose_caption(
    *,
    cls: str | None,
    color: str | None = None,
    background: str | None = None,
    texture: str | None = None,
    size: str | None = None,
    quality: str | None = None,
    short: bool = False,
) -> str:
    """Compose a caption that mentions the given words, each in its family's phrase.

    ``"a blurry photo of a small red 7 on a striped navy background"``; omitted
    words are left out (``cls=None`` says "digit"); ``short=True`` drops
    "photo of" when no quality is given (``"a small 7"``).
    """
    head = f"a {quality} photo of a" if quality else ("a" if short else "a photo of a")
    noun = " ".join(w for w in (size, color, cls or "digit") if w)
    ground = " ".join(w for w in (texture, background) if w)
    text = f"{head} {noun}"
    if ground:
        text += f" on a {ground} background"
    return text


def zero_shot_accuracy(
    model: Any,
    tokenizer: Any,
    images: np.ndarray,
    labels: np.ndarray,
    attributes: dict[str, np.ndarray],
    *,
    batch_size: int = 512,
) -> dict[str, float]:
    """Zero-shot accuracy of a CLIP for the class and each attribute family.

    For a family, the prompt for value ``v`` is the mean (re-normalised) text
    embedding of ``FAMILY_PHRASES[family]`` over the ten classes, so the prompt
    does not leak the image's class. For the class, the prompt is
    :data:`CLASS_PROMPT`.

    Parameters
    ----------
    images : ndarray of shape (n, 32, 32, 3), uint8
    labels : ndarray of shape (n,), int
    attributes : dict
        Family -> ndarray of shape (n,) of value words.

    Returns
    -------
    dict
        ``{"class": acc, "color": acc, ...}``, floats in [0, 1].
    """
    import torch

    with torch.no_grad():
        feats = []
        for start in range(0, len(images), batch_size):
            x = images_to_tensor(images[start : start + batch_size])
            feats.append(torch.nn.functional.normalize(model.encode_image(x), dim=-1))
        img = torch.cat(feats)

        def encode(texts: list[str]) -> torch.Tensor:
            return torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1)

        out: dict[str, float] = {}
        cls_txt = encode([CLASS_PROMPT.format(cls=c) for c in CLASS_NAMES])
        pred = (img @ cls_txt.T).argmax(1).numpy()
        out["class"] = float(np.mean(pred == np.asarray(labels)))
        for family, values in FAMILIES.items():
            protos = []
            for value in values:
                phrase = FAMILY_PHRASES[family]
                emb = encode([phrase.format(value=value, cls=c) for c in CLASS_NAMES])
                protos.append(torch.nn.functional.normalize(emb.mean(0), dim=-1))
            pred = (img @ torch.stack(protos).T).argmax(1).numpy()
            truth = np.asarray(attributes[family], dtype=object)
            out[family] = float(np.mean(np.asarray(values, dtype=object)[pred] == truth))
    return out
