"""The benchmark harness on synthetic datasets, with a scripted embedder whose answers we choose.

The fake embedder maps each text to the one-hot vector of the class (or clip) it names and
each item to the one-hot vector of the answer the test scripted for it, so every metric in
the report is known in advance.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from bindspace.embedding import EmbeddingResult, ItemError
from bindspace.tasks.eval import (
    EvalOptions,
    LayoutError,
    audiocaps,
    esc50,
    format_report,
    get_benchmark,
    imagenet,
    llvip,
    nyud,
    run,
    sund,
    write_report,
)
from bindspace.tasks.eval.base import evenly_spaced

from .synthetic import (
    ESC50_CORRUPT,
    ESC50_MISSING,
    ESC50_ROWS,
    LLVIP_BOXES,
    make_audiocaps,
    make_clotho,
    make_esc50,
    make_imagenet,
    make_llvip,
    make_nyud,
    make_sund,
    sun_encode,
)

DIM = 16


class ScriptedEmbedder:
    """Texts -> one-hot of the first keyword they contain; items -> one-hot of answer(name)."""

    def __init__(self, keywords, answer):
        self.keywords, self.answer = keywords, answer
        self.calls = []

    def one_hot(self, i):
        v = np.zeros(DIM, np.float32)
        v[i] = 1.0
        return v

    def embed(self, kind, items, *, on_error="raise", names=None):
        names = list(names) if names is not None else [str(x) for x in items]
        self.calls.append((kind, len(items)))
        rows, indices, errors = [], [], []
        for i, item in enumerate(items):
            if kind == "text":
                hit = next(k for k, word in enumerate(self.keywords) if word in item)
                rows.append(self.one_hot(hit))
            elif isinstance(item, str) and os.path.getsize(item) < 100:
                errors.append(ItemError(i, names[i], "corrupt"))
                continue
            else:
                rows.append(self.one_hot(self.answer(names[i], item)))
            indices.append(i)
        vectors = np.stack(rows) if rows else np.zeros((0, DIM), np.float32)
        return EmbeddingResult(vectors, indices, errors, [names[i] for i in indices])


def test_esc50_accuracy_folds_and_skips(tmp_path):
    make_esc50(tmp_path / "ESC-50-master")
    classes = ["dog", "chirping birds", "chainsaw"]  # prompt names, in target order 0, 5, 41
    wrong = {"1-2-A-5.wav", "3-6-A-41.wav", "5-2-A-5.wav"}  # scripted mistakes: answer "dog"
    truth = {name: {"dog": 0, "chirping_birds": 1, "chainsaw": 2}[cat] for name, _, _, cat in ESC50_ROWS}
    fake = ScriptedEmbedder(classes, lambda name, item: 0 if name in wrong else truth[name])
    report = run(get_benchmark("esc50"), tmp_path, fake)  # the parent of ESC-50-master works too
    assert report.counts == {"listed": 12, "selected": 12, "evaluated": 10, "skipped": 2, "classes": 3}
    assert {s.name for s in report.skipped} == {ESC50_CORRUPT, ESC50_MISSING}
    assert report.metrics["top1"] == pytest.approx(70.0)  # 7 of 10
    assert "top5" not in report.metrics  # meaningless with 3 classes
    # per fold, by hand: fold 1: 1/2, 2: 2/2, 3: 1/2, 4: 2/2, 5: 1/2
    assert {g: v["top1"] for g, v in report.groups.items()} == pytest.approx(
        {"fold 1": 50.0, "fold 2": 100.0, "fold 3": 50.0, "fold 4": 100.0, "fold 5": 50.0})
    assert [v["n"] for v in report.groups.values()] == [2, 2, 2, 2, 2]
    # per class: dog 3/3, chirping_birds 2/4, chainsaw 2/3
    assert report.per_class["dog"] == {"top1": 100.0, "n": 3}
    assert report.per_class["chirping_birds"] == {"top1": 50.0, "n": 4}
    assert report.per_class["chainsaw"]["n"] == 3
    assert report.metrics["mean_per_class_top1"] == pytest.approx((100 + 50 + 200 / 3) / 3, abs=1e-3)
    assert report.paper == {"top1": 66.9} and report.ours == report.metrics["top1"]
    assert fake.calls[0][0] == "text"  # prompts first, then one chunk of audio
    text = format_report(report)
    assert "66.90" in text and "70.00" in text and "fold 5" in text


def test_esc50_templates_and_limit(tmp_path):
    root = make_esc50(tmp_path / "esc")
    seen = []

    class Recording(ScriptedEmbedder):
        def embed(self, kind, items, **kw):
            if kind == "text":
                seen.extend(items)
            return super().embed(kind, items, **kw)

    fake = Recording(["dog", "chirping birds", "chainsaw"], lambda name, item: 0)
    report = run(get_benchmark("esc50"), root, fake, options=EvalOptions(limit=5), templates=["a {} noise"])
    assert seen == ["a dog noise", "a chirping birds noise", "a chainsaw noise"]
    assert report.templates == ["a {} noise"]
    assert report.counts["selected"] == 5 and report.counts["listed"] == 12
    assert report.counts["evaluated"] + report.counts["skipped"] == 5
    assert len(report.groups) >= 3  # an evenly spaced subset spans the folds


def test_evenly_spaced():
    assert evenly_spaced(10, None) == list(range(10))
    assert evenly_spaced(10, 20) == list(range(10))
    assert evenly_spaced(10, 3) == [0, 3, 6]
    assert evenly_spaced(2000, 5)[-1] == 1600


def test_clotho_recall(tmp_path):
    root = make_clotho(tmp_path)
    # caption k of clip i ranks clip i first for k <= 3, else clip (i + 1) % 4 first
    keywords = [f"clip {i}" for i in range(5)]
    fake = ScriptedEmbedder(keywords, lambda name, item: int(
        {"Rain on a roof.wav": 0, "dog barking, far away.wav": 1, "engine idle.wav": 2, "birds.wav": 3}[name]))
    report = run(get_benchmark("clotho"), root, fake)
    assert report.counts["evaluated"] == 4 and report.counts["skipped"] == 1
    assert report.counts["queries"] == 20 and report.counts["queries_evaluated"] == 20
    # every caption maps to its own clip's one-hot: all ranks are 1
    assert report.metrics["R@1"] == 100.0 and report.metrics["median_rank"] == 1.0
    assert report.paper == {"R@10": 28.4}


def test_clotho_wrong_answers_give_the_ranks_implied(tmp_path):
    root = make_clotho(tmp_path)
    # gallery clip i answers as clip (i + 1) % 4: caption of clip i now matches gallery clip i - 1
    order = {"Rain on a roof.wav": 0, "dog barking, far away.wav": 1, "engine idle.wav": 2, "birds.wav": 3}
    fake = ScriptedEmbedder([f"clip {i}" for i in range(4)], lambda name, item: (order[name] + 1) % 4)
    report = run(get_benchmark("clotho"), root, fake)
    # each caption's own clip scores 0 like two others; ties count against it: rank 4 of 4
    assert report.metrics["R@1"] == 0.0 and report.metrics["median_rank"] == 4.0
    assert report.metrics["R@5"] == 100.0


def test_audiocaps_file_naming_and_missing_clips(tmp_path):
    root = make_audiocaps(tmp_path)
    fake = ScriptedEmbedder([f"sound number {i}" for i in range(4)], lambda name, item: {
        "--0PQM4-hqg_30.wav": 0, "abcDEF12345.wav": 1, "Yxyz-_123456.flac": 2}[name])
    report = run(get_benchmark("audiocaps"), root, fake)
    assert report.counts["listed"] == 4 and report.counts["evaluated"] == 3
    assert report.counts["queries"] == 6 and report.counts["queries_evaluated"] == 6
    assert report.notes["clips_not_found"] == 1
    assert report.metrics["R@1"] == 100.0


def test_audiocaps_candidate_names():
    assert audiocaps.candidate_stems("abc", "30") == ["abc_30", "abc_30.000", "abc", "Yabc"]
    assert audiocaps.candidate_stems("abc", "30.5")[:2] == ["abc_30.5", "abc_30"]


def test_nyud_ten_classes(tmp_path):
    root = make_nyud(tmp_path)
    data = nyud.load(root, EvalOptions())
    assert len(data.classes) == 10 and data.prompt_names[-1] == "other room"
    assert [data.classes[s.target] for s in data.samples] == [
        "bedroom", "kitchen", "others", "living_room", "bathroom", "office"]
    assert data.notes["merged_into_others"] == 1
    fake = ScriptedEmbedder([
        "bathroom", "bedroom", "bookstore", "classroom", "dining room", "home office", "kitchen", "living room",
        "office", "other room"], lambda name, item: 1)  # always "bedroom"
    report = run(get_benchmark("nyud"), root, fake)
    assert report.counts["evaluated"] == 5  # 0006.png is corrupt (scripted: tiny file)
    assert report.metrics["top1"] == pytest.approx(20.0)
    assert "top5" in report.metrics


def test_nyud_split_option_and_errors(tmp_path):
    root = make_nyud(tmp_path, split="train")
    with pytest.raises(LayoutError, match="test/"):
        nyud.load(root, EvalOptions())
    assert len(nyud.load(root, EvalOptions(split="train")).samples) == 6


def test_sund_decoding_classes_and_split(tmp_path):
    mm = np.array([[0, 1, 500, 8191, 7000, 9000]], dtype=np.uint16)
    from .synthetic import depth_png

    decoded = sund.decode_depth_png(depth_png(sun_encode(mm)), "x.png")
    assert decoded.tolist() == [[0, 1, 500, 8000, 7000, 8000]]  # rotation undone, capped at 8 m
    root = make_sund(tmp_path / "SUNRGBD")
    data = sund.load(root, EvalOptions())
    assert len(data.samples) == 4 and data.notes["other_scenes_left_out"] == 1
    assert sorted(data.classes[s.target] for s in data.samples) == [
        "bedroom", "conference_room", "office", "study_space"]
    assert data.samples[0].load().dtype == np.uint16
    split = tmp_path / "test_split.txt"
    split.write_text("/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0002\nrealsense/lg/2014_10_24-15_09_54-1311000073/\n"
                     "kv1/NYUdata/NYU9999\n")
    only = sund.load(root, EvalOptions(split=str(split)))
    assert sorted(s.name for s in only.samples) == [
        "kv1/NYUdata/NYU0002", "realsense/lg/2014_10_24-15_09_54-1311000073"]
    assert only.notes["split_entries_not_found"] == 1


def test_llvip_crops(tmp_path):
    root = make_llvip(tmp_path)
    data = llvip.load(root, EvalOptions(seed=3))
    persons = [s for s in data.samples if s.target == 1]
    backgrounds = [s for s in data.samples if s.target == 0]
    assert len(persons) == 3 and len(backgrounds) == 3  # the 3x3 px box is dropped
    assert [s.name for s in data.skipped] == ["190003.jpg"]  # no annotation
    crop = persons[0].load()
    assert crop.size == (30, 60)
    again = llvip.load(root, EvalOptions(seed=3))
    assert [s.load().tobytes() for s in again.samples] == [s.load().tobytes() for s in data.samples]
    # backgrounds never overlap a person box of their image
    ann = llvip.parse_annotation((root / "Annotations" / "190001.xml").read_bytes(), "x")
    bg, failed = llvip.background_boxes(ann, np.random.default_rng([3, 0]))
    assert failed == 0 and len(bg) == 2
    assert not any(llvip._overlaps(b, ann.persons) for b in bg)
    assert all(b[2] - b[0] == p[2] - p[0] and b[3] - b[1] == p[3] - p[1] for b, p in zip(bg, ann.persons))
    assert ann.persons == [b[1:] for b in LLVIP_BOXES["190001"][:2]]
    fake = ScriptedEmbedder(["background", "person"], lambda name, item: 1)  # always "person"
    report = run(get_benchmark("llvip"), root, fake)
    assert report.metrics["top1"] == pytest.approx(50.0) and report.counts["evaluated"] == 6


def test_imagenet_class_names(tmp_path):
    root = make_imagenet(tmp_path / "val")
    data = imagenet.load(root, EvalOptions())
    assert data.classes == ["n01440764", "n01443537", "n02012849"]
    assert data.prompt_names == ["tench", "goldfish", "n02012849"]
    assert len(data.samples) == 7 and [s.reason for s in data.skipped] == ["empty file"]
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["tench", "goldfish", "crane bird"]))
    assert imagenet.load(root, EvalOptions(class_names=str(names))).prompt_names[-1] == "crane bird"


def test_shared_prompt_names_tie_and_count_as_wrong(tmp_path):
    root = make_imagenet(tmp_path / "val", names="n01440764 crane\nn01443537 crane\nn02012849 heron\n")
    fake = ScriptedEmbedder(["crane", "heron"], lambda name, item: 0 if name.startswith("n014") else 1)
    report = run(get_benchmark("imagenet"), root, fake)
    assert report.notes["shared_prompt_names"] == ["crane"]
    assert report.metrics["top1"] == pytest.approx(100 * 2 / 7, abs=1e-3)  # only the heron images are right


@pytest.mark.parametrize("bench, make, remove, message", [
    ("esc50", make_esc50, "meta/esc50.csv", "meta/esc50.csv"),
    ("esc50", make_esc50, "audio", "audio/"),
    ("clotho", make_clotho, "clotho_captions_evaluation.csv", "clotho_captions_evaluation.csv"),
    ("clotho", make_clotho, "evaluation", "evaluation/"),
    ("audiocaps", make_audiocaps, "test.csv", "test.csv"),
    ("nyud", make_nyud, "test/scenes.csv", "scenes.csv"),
    ("llvip", make_llvip, "Annotations", "Annotations/"),
])
def test_missing_layout_names_what_is_missing(tmp_path, bench, make, remove, message):
    import shutil

    root = make(tmp_path / "data")
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(LayoutError, match=message.replace(".", r"\.")) as info:
        get_benchmark(bench).load(root, EvalOptions())
    assert "\n" not in str(info.value)


def test_bad_csv_columns(tmp_path):
    root = make_esc50(tmp_path / "esc")
    (root / "meta" / "esc50.csv").write_text("file,fold\nx.wav,1\n")
    with pytest.raises(LayoutError, match="lacks column"):
        esc50.load(root, EvalOptions())


def test_report_file_is_json(tmp_path):
    root = make_esc50(tmp_path / "esc")
    report = run(get_benchmark("esc50"), root, ScriptedEmbedder(["dog", "chirping birds", "chainsaw"],
                                                                lambda n, i: 0))
    path = write_report(report, tmp_path / "out" / "r.json")
    data = json.loads(Path(path).read_text())
    assert data["benchmark"] == "esc50" and data["paper_value"] == 66.9
    assert data["counts"]["skipped"] == len(data["skipped"]) == 2
    assert not list((tmp_path / "out").glob(".*tmp"))
