"""`bindspace train` with a `kind = "detect"` recipe: a COCO-style manifest of digit scenes, the tiny model frozen."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bindspace.cli import main
from bindspace.detect import Detection
from bindspace.detect.coco import read_coco
from bindspace.detect.evaluate import recall_precision
from bindspace.detect.scenes import Scene, SceneSpec, draw_scene
from bindspace.errors import InputError
from bindspace.train.digits_world import load_digits, torch_threads

# Two digits whose names the tiny preset's (untrained) text tower embeds far apart (cosine 0.64).
CATEGORIES = {1: "one", 7: "seven"}
SPEC = SceneSpec(canvas=32, min_objects=1, max_objects=2, min_size=11, max_size=14)


def digit_scenes(count: int, seed: int) -> list[Scene]:
    """Scenes of ones and sevens, drawn as bindspace.detect.scenes documents."""
    ink, labels = load_digits()
    pool = np.flatnonzero(np.isin(labels, list(CATEGORIES)))
    rng = np.random.default_rng(seed)
    return [draw_scene(ink, labels, pool, rng, SPEC) for _ in range(count)]


def write_manifest(folder: Path, scenes: list[Scene]) -> Path:
    """PNGs under folder/images and folder/train.json in COCO's layout (bbox x, y, w, h; ids, not indices)."""
    (folder / "images").mkdir(parents=True)
    images: list[dict] = []
    annotations: list[dict] = []
    for i, scene in enumerate(scenes):
        name = f"images/scene_{i:03d}.png"
        Image.fromarray(scene.image).save(folder / name)
        images.append({"id": 100 + i, "file_name": name, "width": SPEC.canvas, "height": SPEC.canvas})
        for (x0, y0, x1, y1), digit in zip(scene.boxes.tolist(), scene.labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "category_id": int(digit), "iscrowd": 0})
    manifest = {"images": images, "annotations": annotations,
                "categories": [{"id": cid, "name": name} for cid, name in CATEGORIES.items()]}
    path = folder / "train.json"
    path.write_text(json.dumps(manifest))
    return path


def write_recipe(path: Path, manifest: Path, encoder: Path, out_dir: Path, steps: int) -> Path:
    path.write_text(f'''
kind = "detect"
[detect]
encoder = "{encoder}"
prompt = "{{name}}"
image_size = 32
stride = 4
channels = 16
box_prior = 2.5
[data]
train = ["{manifest}"]
[run]
out_dir = "{out_dir}"
steps = {steps}
batch_size = 16
save_every = 0
log_every = 50
tensorboard = false
progress = false
[optim]
lr = 3e-3
weight_decay = 1e-4
warmup_steps = 10
grad_clip = 5.0
''')
    return path


@pytest.mark.slow
def test_train_recipe_then_detect_finds_the_planted_digits(tiny_model_dir, tiny_model, tmp_path, capsys):
    manifest = write_manifest(tmp_path / "data", digit_scenes(64, seed=0))
    recipe = write_recipe(tmp_path / "detect.toml", manifest, tiny_model_dir, tmp_path / "run", steps=200)
    with torch_threads(1):  # tiny convolutions: a second thread only waits on a shared CI machine
        assert main(["train", str(recipe), "--quiet"]) == 0
    summary = capsys.readouterr().out
    detector = tmp_path / "run" / "detector"
    assert f"detector directory: {detector}" in summary
    meta = json.loads((detector / "detector.json").read_text())
    assert meta["training"]["classes"] == ["one", "seven"] and meta["training"]["class_texts"] == ["one", "seven"]
    assert meta["space"]["checkpoint"] == str(tiny_model_dir.resolve())  # `detect` finds the model by itself

    held_out = digit_scenes(12, seed=1)
    files = []
    for i, scene in enumerate(held_out):
        files.append(tmp_path / f"held_out_{i}.png")
        Image.fromarray(scene.image).save(files[-1])
    assert main(["detect", *map(str, files), "--detector", str(detector), "--text", "one", "--text", "seven",
                 "--threshold", "0.2"]) == 0
    result = json.loads(capsys.readouterr().out)
    found = [[Detection(tuple(d["box"]), d["score"], d["label"], d["class_index"]) for d in r["detections"]]
             for r in result]
    # Class indices follow the --text order: 0 = one, 1 = seven; the scenes' labels are the digits themselves.
    truth = [_Truth(scene.boxes, np.where(scene.labels == 1, 0, 1)) for scene in held_out]
    recall, precision = recall_precision(truth, found)
    assert recall >= 0.6 and precision >= 0.5, (recall, precision)

    # The same directory serves POST /v1/detect (raw JSON, no Content-Type), with the same answers.
    import base64

    from fastapi.testclient import TestClient

    from bindspace.serve.app import create_app
    from bindspace.serve.detect_api import detector_extras
    from bindspace.serve.detect_api import router as detect_router

    app = create_app(tiny_model, routers=[detect_router], extras=detector_extras(str(detector), tiny_model))
    body = {"images": [base64.b64encode(files[0].read_bytes()).decode()], "threshold": 0.2,
            "classes": [{"name": "one", "parts": [{"modality": "text", "text": "one"}]},
                        {"name": "seven", "parts": [{"modality": "text", "text": "seven"}]}]}
    with TestClient(app) as client:
        response = client.post("/v1/detect", content=json.dumps(body))
    assert response.status_code == 200, response.text
    served = response.json()["images"][0]["detections"]
    assert [(d["label"], d["class_index"]) for d in served] == [(d["label"], d["class_index"])
                                                                 for d in result[0]["detections"]]


@pytest.mark.slow
def test_the_recipe_trains_only_the_detector_and_can_be_exported_again(tiny_model_dir, tmp_path, capsys):
    manifest = write_manifest(tmp_path / "data", digit_scenes(8, seed=0))
    recipe = write_recipe(tmp_path / "detect.toml", manifest, tiny_model_dir, tmp_path / "run", steps=2)
    before = {p.name: p.read_bytes() for p in tiny_model_dir.glob("*.safetensors")}
    assert main(["train", str(recipe), "--quiet"]) == 0
    assert {p.name: p.read_bytes() for p in tiny_model_dir.glob("*.safetensors")} == before  # the space frozen
    from bindspace.detect import DetectorConfig, RegionNetwork
    from bindspace.train.checkpointing import latest_checkpoint, load_checkpoint

    checkpoint = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert checkpoint is not None
    state = load_checkpoint(checkpoint)
    network = RegionNetwork(DetectorConfig(embed_dim=24, image_size=32, channels=16, box_prior=2.5))
    assert set(state["model"]) == {name for name, _ in network.named_parameters()}  # only the detector trains
    first = (tmp_path / "run" / "detector" / "weights.safetensors").read_bytes()
    assert main(["train", str(recipe), "--quiet", "--export-only"]) == 0
    assert "exported" in capsys.readouterr().out
    assert (tmp_path / "run" / "detector" / "weights.safetensors").read_bytes() == first  # same weights again
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2] and 0 <= metrics[0]["acc"] <= 1 and metrics[0]["loss"] > 0


class _Truth:
    def __init__(self, boxes: np.ndarray, labels: np.ndarray) -> None:
        self.boxes, self.labels = boxes, labels


def good_manifest(folder: Path) -> dict:
    (folder / "a.png").parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 10), "white").save(folder / "a.png")
    return {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
            "annotations": [{"image_id": 1, "bbox": [2, 2, 5, 5], "category_id": 3}],
            "categories": [{"id": 3, "name": "dog"}]}


def test_a_good_manifest_reads_as_corner_boxes_and_class_indices(tmp_path):
    data = good_manifest(tmp_path)
    data["annotations"].append({"image_id": 1, "bbox": [0, 0, 20, 10], "category_id": 3, "iscrowd": 1})
    data["categories"].insert(0, {"id": 9, "name": "cat"})
    (tmp_path / "m.json").write_text(json.dumps(data))
    coco = read_coco(tmp_path / "m.json")
    assert coco.names == ["dog", "cat"] and coco.category_ids == [3, 9]  # ordered by id
    (image,) = coco.images
    assert image.path == tmp_path / "a.png" and (image.width, image.height) == (20, 10)
    assert image.boxes.tolist() == [[2, 2, 7, 7]] and image.labels.tolist() == [0]  # the crowd region left out


def _break(data: dict, how: str) -> dict:
    if how == "no annotations":
        del data["annotations"]
    elif how == "image without width":
        del data["images"][0]["width"]
    elif how == "unknown category":
        data["annotations"][0]["category_id"] = 4
    elif how == "unknown image":
        data["annotations"][0]["image_id"] = 2
    elif how == "box outside":
        data["annotations"][0]["bbox"] = [18, 2, 5, 5]
    elif how == "box without area":
        data["annotations"][0]["bbox"] = [2, 2, 0, 5]
    elif how == "three numbers":
        data["annotations"][0]["bbox"] = [2, 2, 5]
    elif how == "missing file":
        data["images"][0]["file_name"] = "gone.png"
    elif how == "no categories":
        data["categories"] = []
    return data


@pytest.mark.parametrize(("how", "needle"), [
    ("no annotations", "no 'annotations' list"),
    ("image without width", "images[0] has no 'width'"),
    ("unknown category", "annotations[0]: category_id 4 is not among the categories (3)"),
    ("unknown image", "annotations[0]: image_id 2 is not among the images"),
    ("box outside", "annotations[0]: bbox [18, 2, 5, 5] lies outside its 20x10 image"),
    ("box without area", "has no area"),
    ("three numbers", "bbox must be [x, y, width, height]"),
    ("missing file", "images[0]: image file 'gone.png' not found"),
    ("no categories", "'categories' is empty"),
])
def test_bad_manifests_are_one_line_naming_the_file(tmp_path, how, needle):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(_break(good_manifest(tmp_path), how)))
    with pytest.raises(InputError) as info:
        read_coco(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and needle in message and "\n" not in message


@pytest.mark.parametrize(("content", "needle"), [("{not json", "not valid JSON"), ("[1, 2]", "the top level must be"),
                                                 (None, "manifest not found")])
def test_unreadable_manifests_through_the_command_are_one_line(tiny_model_dir, tmp_path, capsys, content, needle):
    manifest = tmp_path / "train.json"
    if content is not None:
        manifest.write_text(content)
    recipe = write_recipe(tmp_path / "detect.toml", manifest, tiny_model_dir, tmp_path / "run", steps=2)
    assert main(["train", str(recipe), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{manifest}: {needle}" in err and err.count("\n") == 1


def test_an_image_whose_size_is_not_the_manifests_is_one_line(tiny_model_dir, tmp_path, capsys):
    data = good_manifest(tmp_path)
    data["images"][0]["height"] = 12
    (tmp_path / "train.json").write_text(json.dumps(data))
    recipe = write_recipe(tmp_path / "detect.toml", tmp_path / "train.json", tiny_model_dir, tmp_path / "run",
                          steps=1)
    assert main(["train", str(recipe), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a.png'}: is 20x10 pixels but its manifest says 20x12" in err and err.count("\n") == 1


@pytest.mark.parametrize(("setting", "needle"), [
    ('prompt = "a photo"', "detect.prompt: must contain {name}"),
    ("stride = 3", "detector stride must be 1, 2, 4, 8 or 16"),
    ("colour = 1", "detect.colour"),
])
def test_bad_detect_sections_are_one_line(tiny_model_dir, tmp_path, capsys, setting, needle):
    recipe = write_recipe(tmp_path / "detect.toml", tmp_path / "train.json", tiny_model_dir, tmp_path / "run",
                          steps=1)
    text = recipe.read_text().replace("[detect]\n", f"[detect]\n{setting}\n")
    if setting.startswith(("prompt", "stride")):
        key = setting.split(" ")[0]
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} = ") or line == setting)
    recipe.write_text(text)
    assert main(["train", str(recipe), "--check"]) in (1, 2)
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
