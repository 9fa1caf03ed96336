"""`bindspace classify` through the real CLI with the tiny preset."""
import json

import pytest

from bindspace.cli import main
from bindspace.tasks import ZeroShotClassifier

MODEL = ["--model", "imagebind_tiny_test"]


def classify(tiny_pth, *args):
    return main(["classify", *args, *MODEL, "--checkpoint", str(tiny_pth)])


def test_json_output_matches_the_library(tiny_pth, tiny_model, media_dir, capsys):
    files = [str(media_dir / "audio_1.wav"), str(media_dir / "audio_2.wav")]
    code = classify(tiny_pth, "--modality", "audio", "--labels", "dog,rain", "--labels", "siren", "-k", "2",
                    "--json", *files)
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [entry["file"] for entry in out] == files
    library = ZeroShotClassifier(tiny_model, ["dog", "rain", "siren"], modality="audio").predict("audio", files, k=2)
    for entry, pred in zip(out, library):
        labels = [p["label"] for p in entry["predictions"]]
        probs = [p["probability"] for p in entry["predictions"]]
        assert labels == list(pred.labels) and probs == pytest.approx(pred.probabilities, abs=1e-6)
        assert len(labels) == 2 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9


def test_table_labels_file_and_templates(tiny_pth, tiny_model, media_dir, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("# scenes\nbeach\n\nforest\nbeach\ncity street\n")
    image = str(media_dir / "image_1.jpg")
    code = classify(tiny_pth, "-m", "image", "--labels-file", str(labels), "--template", "a photo of the {}.",
                    "-k", "10", image)
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == image and len(lines) == 4  # 3 distinct labels, -k beyond them shows all
    shown = [line.split()[1:-1] for line in lines[1:]]
    expected = ZeroShotClassifier(tiny_model, ["beach", "forest", "city street"], ["a photo of the {}."]).predict(
        "image", [image], k=3)[0]
    assert [" ".join(s) for s in shown] == list(expected.labels)
    probs = [float(line.split()[-1]) for line in lines[1:]]
    assert sum(probs) == pytest.approx(1.0, abs=2e-4)


def test_bad_files_reported_one_line_each(tiny_pth, media_dir, tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF-not-really")
    good = str(media_dir / "audio_3.wav")
    code = classify(tiny_pth, "--modality", "audio", "--labels", "dog,rain", "--json",
                    str(broken), good, str(tmp_path / "missing.wav"))
    assert code == 1
    captured = capsys.readouterr()
    assert [entry["file"] for entry in json.loads(captured.out)] == [good]
    err = captured.err.strip().splitlines()
    assert len(err) == 2
    assert str(broken) in err[0] and "missing.wav: no such file" in err[1]


@pytest.mark.parametrize("args, message", [
    (["--labels", " , "], "no labels"),
    (["--labels-file", "/nonexistent/labels.txt"], "no such file"),
    (["--labels", "a,b", "--template", "no placeholder"], "exactly once"),
])
def test_usage_errors_are_one_line_and_exit_2(tiny_pth, media_dir, capsys, args, message):
    # the README: usage errors exit 2 (these are found after parsing, so argparse cannot)
    code = classify(tiny_pth, "--modality", "audio", *args, str(media_dir / "audio_1.wav"))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bindspace classify: error:") and message in err and "\n" not in err


def test_bad_k_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["classify", "--modality", "audio", "--labels", "a", "-k", "0", "x.wav"])
    assert info.value.code == 2


def test_modality_is_required():
    with pytest.raises(SystemExit) as info:
        main(["classify", "--labels", "a", "x.wav"])
    assert info.value.code == 2


def test_video_with_audio(tiny_pth, tiny_model, tmp_path, capsys):
    from bindspace.embedding import Embedder
    from bindspace.tasks import embed_video
    from tasks.synthetic import write_video_with_audio

    video = str(write_video_with_audio(tmp_path / "v.mp4"))
    code = classify(tiny_pth, "-m", "video", "--with-audio", "--labels", "a violin,a drum,a car", "--json", video)
    assert code == 0
    got = json.loads(capsys.readouterr().out)[0]["predictions"]
    fused = embed_video(Embedder(tiny_model), [video]).vectors
    expected = ZeroShotClassifier(tiny_model, ["a violin", "a drum", "a car"], modality="video").predict_vectors(fused)
    assert [p["label"] for p in got] == list(expected[0].labels)
    assert code == 0 and classify(tiny_pth, "-m", "audio", "--with-audio", "--labels", "a,b", video) == 2


def test_workers_option_is_spelled_and_defaulted_like_embed_and_index():
    from bindspace.cli import build_parser

    parser = build_parser()
    for spelling in ("--workers", "--num-workers"):
        args = parser.parse_args(["classify", "--modality", "audio", "--labels", "a,b", spelling, "2", "x.wav"])
        assert args.workers == 2
        args = parser.parse_args(["eval", "esc50", "--root", "r", spelling, "3"])
        assert args.workers == 3
    # one default for every command that decodes files: None, meaning min(4, CPUs - 1)
    defaults = {
        "classify": parser.parse_args(["classify", "--modality", "audio", "--labels", "a", "x.wav"]).workers,
        "eval": parser.parse_args(["eval", "esc50", "--root", "r"]).workers,
        "embed": parser.parse_args(["embed", "--modality", "audio", "-o", "x.npy", "x.wav"]).workers,
        "index": parser.parse_args(["index", "x", "--db", "d"]).workers,
    }
    assert set(defaults.values()) == {None}, defaults
