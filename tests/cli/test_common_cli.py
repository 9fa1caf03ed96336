"""What every command shares: --device checks, --help/--version without torch, usage errors exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bindspace.cli import main
from bindspace.cli.common import UsageError, check_device

TINY = "imagebind_tiny_test"


def _unavailable(device: str) -> bool:
    if device.startswith("cuda"):
        return not torch.cuda.is_available()
    if device == "mps":
        return not torch.backends.mps.is_available()
    return True


COMMANDS = {
    "embed": ["embed", "--modality", "text", "-o", "OUT/x.npy", "hello"],
    "classify": ["classify", "--modality", "image", "--labels", "a,b", "MEDIA/image_1.jpg"],
    "search": ["search", "--db", "OUT/db", "hello"],
    "index": ["index", "MEDIA", "--db", "OUT/db"],
    "eval": ["eval", "esc50", "--root", "OUT"],
}


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps", "cdua"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_missing_device_is_one_line_exit_2(command, device, tmp_path, media_dir, tiny_pth, no_model_load, capsys):
    if not _unavailable(device):
        pytest.skip(f"this machine has {device}")
    argv = [a.replace("OUT", str(tmp_path)).replace("MEDIA", str(media_dir)) for a in COMMANDS[command]]
    assert main([*argv, "--model", TINY, "--checkpoint", str(tiny_pth), "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bindspace {command}: error: --device {device}: ") and err.count("\n") == 1, err
    assert "available here: cpu" in err and "Traceback" not in err
    assert no_model_load == [] and not (tmp_path / "x.npy").exists() and not (tmp_path / "db").exists()


def test_device_messages(monkeypatch):
    assert check_device("cpu") == "cpu"
    with pytest.raises(UsageError, match=r"--device cdua: not a device name \(available here: cpu"):
        check_device("cdua")
    with pytest.raises(UsageError, match="--device meta: not supported"):
        check_device("meta")
    # a machine with two GPUs: cuda:3 is refused, the ones it has are listed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda") == "cuda" and check_device("cuda:1") == "cuda:1"
    with pytest.raises(UsageError, match=r"--device cuda:3: no such device on this machine "
                                         r"\(available here: cpu, cuda, cuda:0, cuda:1"):
        check_device("cuda:3")


def test_help_and_version_do_not_import_torch():
    code = ("import sys\nfrom bindspace.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print('TORCH', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bindspace ") and lines[0].split()[1][0].isdigit()  # "bindspace 0.1.0"
    assert "COMMAND" in done.stdout and "index" in done.stdout
    assert lines[-1] == "TORCH False"


def test_version_matches_the_package(capsys):
    import bindspace

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"bindspace {bindspace.__version__}\n"


def test_train_without_config_is_a_usage_error(capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bindspace train: error: give a CONFIG file") and err.count("\n") == 1


def test_demo_checks_its_output_before_training(readonly_dir, tmp_path, capsys):
    assert main(["demo", "--out", str(readonly_dir / "model")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bindspace demo: error: {readonly_dir}: cannot write the model directory there (")
    (tmp_path / "file").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "file")]) == 1
    assert "not a directory" in capsys.readouterr().err
