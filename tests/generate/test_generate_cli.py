"""`bindspace generate` end to end (tiny unCLIP pipeline, tiny generator) and its one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from bindspace.cli import build_parser, main


def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["generate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_unclip_end_to_end(capsys, tmp_path, unclip_dir, tiny_model_dir, media_dir):
    out = tmp_path / "out" / "rain.png"
    out.parent.mkdir()  # an output file's folder must exist (a missing one is an error: test_cli_edges)
    code, stdout, _ = run(capsys, "--pipeline", str(unclip_dir), "--checkpoint", str(tiny_model_dir),
                          "--audio", str(media_dir / "audio_1.wav"), "a dog", "--weight", "1", "--weight", "0.5",
                          "--steps", "2", "--num-images", "2", "-o", str(out), "--json")
    assert code == 0
    report = json.loads(stdout)
    written = [Path(p) for p in report["images"]]
    assert [p.name for p in written] == ["rain-1.png", "rain-2.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (16, 16)
    assert [q["weight"] for q in report["query"]] == [1.0, 0.5]
    assert report["pipeline"]["embedding"]["source"] == "measured"


def test_unclip_seed_reproducible_and_embed_norm_option(capsys, tmp_path, unclip_dir, tiny_model_dir):
    common = ["--pipeline", str(unclip_dir), "--checkpoint", str(tiny_model_dir), "a cat", "--steps", "2"]
    assert run(capsys, *common, "-o", str(tmp_path / "a.png"))[0] == 0
    assert run(capsys, *common, "-o", str(tmp_path / "b.png"))[0] == 0
    code, stdout, _ = run(capsys, *common, "--embed-norm", "3", "-o", str(tmp_path / "c.png"), "--json")
    assert code == 0
    assert json.loads(stdout)["pipeline"]["embedding"] == {
        "transform": "image_embeds = embed_norm * unit_query", "value": 3.0, "source": "given", "std": 0.0,
        "images": 0}
    a, b, c = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # the embedding's length reaches the pipeline


def test_no_pipeline_directory(capsys, tmp_path):
    code, _, err = run(capsys, "--pipeline", str(tmp_path / "missing"), "a dog", "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "missing: no such pipeline directory" in one_error_line(err)


def test_a_pipeline_that_is_not_unclip(capsys, tmp_path):
    folder = tmp_path / "sd"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    code, _, err = run(capsys, "--pipeline", str(folder), "a dog", "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "a StableDiffusionPipeline pipeline, not Stable unCLIP" in one_error_line(err)


def test_a_folder_that_is_no_pipeline(capsys, tmp_path):
    code, _, err = run(capsys, "--pipeline", str(tmp_path), "a dog", "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "not a generator directory" in one_error_line(err)


def test_embedding_width_not_matching_the_pipeline(capsys, tmp_path, unclip_wide_dir, tiny_model_dir):
    code, _, err = run(capsys, "--pipeline", str(unclip_wide_dir), "--checkpoint", str(tiny_model_dir), "a dog",
                       "-o", str(tmp_path / "x.png"))
    assert code == 1
    line = one_error_line(err)
    assert "conditioned on 32-d image embeddings" in line and "24-d" in line
    assert not (tmp_path / "x.png").exists()


def test_missing_query_file_and_no_query(capsys, tmp_path, tiny_generator_dir):
    code, _, err = run(capsys, "--pipeline", str(tiny_generator_dir), "--audio", str(tmp_path / "none.wav"),
                       "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "none.wav: no such file (--audio)" in one_error_line(err)
    code, _, err = run(capsys, "--pipeline", str(tiny_generator_dir), "-o", str(tmp_path / "x.png"))
    assert code == 2


def test_tiny_generator_uses_its_recorded_model(capsys, tmp_path, tiny_generator_dir, media_dir):
    args = ["--pipeline", str(tiny_generator_dir), "--image", str(media_dir / "image_1.jpg")]
    assert run(capsys, *args, "-o", str(tmp_path / "a.png"))[0] == 0
    assert run(capsys, *args, "-o", str(tmp_path / "b.png"))[0] == 0
    assert run(capsys, *args, "--seed", "5", "-o", str(tmp_path / "c.png"))[0] == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in "abc")
    assert a.shape == (64, 64)  # 8x8 drawn, enlarged 8x
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_tiny_generator_has_no_prompt(capsys, tmp_path, tiny_generator_dir):
    code, _, err = run(capsys, "--pipeline", str(tiny_generator_dir), "a dog", "--prompt", "red",
                       "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "no text encoder" in one_error_line(err)


def test_demo_keeps_its_plain_form_and_gains_generate():
    from bindspace.cli import demo, generate

    parser = build_parser()
    plain = parser.parse_args(["demo", "--out", "d"])
    assert plain.handler is demo.run and plain.out == "d"
    sub = parser.parse_args(["demo", "generate", "--out", "d", "--steps", "10"])
    assert sub.handler is generate.run_demo_generate and sub.out == "d" and sub.steps == 10


def test_broken_or_pickled_pipeline_weights(capsys, tmp_path, unclip_dir, tiny_model_dir):
    import shutil

    import torch
    from safetensors.torch import load_file

    broken = shutil.copytree(unclip_dir, tmp_path / "broken")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    code, _, err = run(capsys, "--pipeline", str(broken), "--checkpoint", str(tiny_model_dir), "a dog",
                       "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "broken: cannot load the unCLIP pipeline" in one_error_line(err)

    # A pickled .bin instead of safetensors is never loaded (unpickling can run code).
    pickled = shutil.copytree(unclip_dir, tmp_path / "pickled")
    weights = pickled / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), pickled / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    code, _, err = run(capsys, "--pipeline", str(pickled), "--checkpoint", str(tiny_model_dir), "a dog",
                       "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "no file named diffusion_pytorch_model.safetensors" in one_error_line(err)


def test_pipeline_argument_checks_are_one_line(capsys, tmp_path, unclip_dir, tiny_model_dir):
    code, _, err = run(capsys, "--pipeline", str(unclip_dir), "--checkpoint", str(tiny_model_dir), "a dog",
                       "--height", "20", "--steps", "1", "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert "divisible by 8" in one_error_line(err)
    code, _, err = run(capsys, "--pipeline", str(unclip_dir), "a dog", "--noise-level", "1000",
                       "-o", str(tmp_path / "x.png"))
    assert code == 2
