"""The demo commands' shared options (cli/common.add_demo_args) and helpers: one parser shape for all four."""
from __future__ import annotations

import pytest

from bindspace.cli import build_parser, main
from bindspace.cli.common import UsageError, demo_log, demo_progress, demo_status, step_counts

DEMOS = [(["demo"], 1), (["demo", "llm", "--out", "d"], None),  # llm: 1, or every core with --lm (chosen at run)
         (["demo", "generate", "--out", "d"], 1),
         (["demo", "detect", "--out", "d"], 2)]


@pytest.mark.parametrize("command,threads", DEMOS)
def test_every_demo_has_the_shared_options(command, threads):
    parser = build_parser()
    defaults = parser.parse_args(command)
    assert (defaults.seed, defaults.threads, defaults.json, defaults.quiet) == (0, threads, False, False)
    given = parser.parse_args([*command, "--seed", "7", "--threads", "3", "--json", "--quiet", "--debug"])
    assert (given.seed, given.threads, given.json, given.quiet, given.debug) == (7, 3, True, True, True)


@pytest.mark.parametrize("command,threads", DEMOS)
def test_zero_threads_is_a_usage_error_in_every_demo(command, threads, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--threads", "0"])
    assert exit_info.value.code == 2
    assert "argument --threads: must be >= 1, got 0" in capsys.readouterr().err


def test_each_demo_names_its_own_minimum():
    parser = build_parser()
    assert parser.parse_args(["demo", "--min-accuracy", "0.8"]).min_accuracy == 0.8
    assert parser.parse_args(["demo", "llm", "--out", "d", "--min-accuracy", "0.5"]).min_accuracy == 0.5
    assert parser.parse_args(["demo", "detect", "--out", "d", "--min-ratio", "0.7"]).min_ratio == 0.7


def test_demo_status_is_one_below_the_minimum(capsys):
    assert demo_status(0.85, None, "emergent accuracy") == 0
    assert demo_status(0.85, 0.8, "emergent accuracy") == 0
    assert capsys.readouterr().err == ""
    assert demo_status(0.5, 0.8, "emergent accuracy") == 1
    assert capsys.readouterr().err == "emergent accuracy 50.0% is below --min-accuracy 80.0%\n"
    assert demo_status(0.5, 0.75, "tone/text recall ratio", "--min-ratio", ".2f") == 1
    assert capsys.readouterr().err == "tone/text recall ratio 0.50 is below --min-ratio 0.75\n"


@pytest.mark.parametrize("quiet,json,shown", [(False, False, True), (True, False, False), (False, True, False)])
def test_demo_log_and_progress_follow_quiet_and_json(quiet, json, shown, capsys):
    args = build_parser().parse_args(["demo", *(["--quiet"] if quiet else []), *(["--json"] if json else [])])
    assert demo_progress(args) is shown
    demo_log(args)("stage 1")
    assert capsys.readouterr().err == ("stage 1\n" if shown else "")


def test_step_counts():
    assert step_counts("300", "S1,S2 or one number", one_sets_both=True) == (300, 300)
    assert step_counts("300,20", "S1,S2 or one number", one_sets_both=True) == (300, 20)
    assert step_counts("5,6", "LM,BRIDGE") == (5, 6)
    for text, both, message in [("300", False, "expected LM,BRIDGE"), ("1,2,3", True, "expected LM,BRIDGE"),
                                ("a,b", False, "expected LM,BRIDGE"), ("0,4", False, "steps must be >= 1")]:
        with pytest.raises(UsageError, match=message):
            step_counts(text, "LM,BRIDGE", one_sets_both=both)
