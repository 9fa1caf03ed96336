"""Pictures of detections: the image with a labelled box per detection."""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

from .detector import Detection

COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#000075",
           "#808000")


def draw_detections(image: Image.Image, detections: Sequence[Detection], min_side: int = 256) -> Image.Image:
    """A copy of `image` (upscaled so its shorter side is at least `min_side`) with each box and 'label score'."""
    scale = max(1, -(-min_side // max(min(image.size), 1)))  # ceil: small images are enlarged by a whole factor
    canvas = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    pen = ImageDraw.Draw(canvas)
    for det in detections:
        colour = COLOURS[det.class_index % len(COLOURS)]
        x0, y0, x1, y1 = (v * scale for v in det.box)
        pen.rectangle((x0, y0, x1, y1), outline=colour, width=max(2, scale // 2))
        text = f"{det.label} {det.score:.2f}"
        left, top, right, bottom = pen.textbbox((x0, y0), text)
        lift = bottom - top + 2
        top_edge = y0 - lift if y0 >= lift else y0  # no room above the box: label inside its top edge
        pen.rectangle((x0, top_edge, x0 + right - left + 4, top_edge + lift), fill=colour)
        pen.text((x0 + 2, top_edge), text, fill="white")
    return canvas
