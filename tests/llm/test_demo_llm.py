"""`bindspace demo llm` end to end: a bridge trained on images answers about keypad tones (slow: minutes)."""
from __future__ import annotations

import json

import pytest

from bindspace.cli import build_parser, main
from bindspace.llm.demo import WORDS, answer_digit


def test_plain_demo_keeps_its_arguments_and_llm_is_a_subcommand():
    plain = build_parser().parse_args(["demo", "--out", "d"])
    assert plain.out == "d" and plain.demo is None and plain.handler.__module__ == "bindspace.cli.demo"
    llm = build_parser().parse_args(["demo", "llm", "--out", "d"])
    assert llm.out == "d" and llm.handler.__name__ == "run_demo_llm"


def test_answer_digit_reads_words_and_numerals():
    assert answer_digit("the digit seven") == 7
    assert answer_digit("a handwritten 3") == 3
    assert answer_digit("the digit") is None


@pytest.mark.slow
def test_demo_llm_answers_about_tones_through_the_real_commands(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "llm", "--out", str(out), "--json", "--min-accuracy", "0.8"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["audio_answers"] >= 0.8  # chance: 0.1; the bridge never saw audio
    assert report["image_answers"] >= 0.8
    right = 0
    for digit in range(10):
        tone = out / "model" / "examples" / f"tone_{digit}.wav"
        assert main(["chat", "--bridge", str(out / "bridge"), "--audio", str(tone), "what digit is this?"]) == 0
        answer = capsys.readouterr().out.strip()
        assert answer.startswith("the digit "), answer
        right += answer == f"the digit {WORDS[digit]}"
    assert right >= 8
