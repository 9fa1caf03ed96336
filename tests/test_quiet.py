"""bindspace.quiet: the one way libraries are silenced, and everything comes back afterwards."""
from __future__ import annotations

import logging
import warnings

import pytest

from bindspace.quiet import quiet


def test_loggers_and_stdout_are_silenced_inside_and_restored_after(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("bindspace.test.noisy")
    logger.setLevel(logging.DEBUG)
    with quiet(["bindspace.test.noisy"], stdout=True):
        assert logger.level == logging.ERROR
        print("progress 10%")
    print("after")
    assert logger.level == logging.DEBUG
    assert capsys.readouterr().out == "after\n"


def test_a_plain_tqdm_bar_on_stderr_is_swallowed_and_errors_still_raise(capsys: pytest.CaptureFixture[str]) -> None:
    from tqdm.auto import tqdm  # transformers draws its GGUF dequantization bar like this

    with pytest.raises(ValueError, match="bad tensor"), quiet(stderr=True):
        for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
        raise ValueError("bad tensor")
    for _ in tqdm(range(1), desc="after"):
        pass
    err = capsys.readouterr().err
    assert "Converting" not in err and "after" in err


def test_only_the_named_warning_category_is_dropped() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet(ignore=FutureWarning):
            warnings.warn("renamed", FutureWarning, stacklevel=1)
            warnings.warn("real problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["real problem"]


def test_hugging_face_verbosity_and_bars_come_back() -> None:
    transformers_logging = pytest.importorskip("transformers.utils.logging")
    transformers_logging.set_verbosity_info()
    transformers_logging.enable_progress_bar()
    try:
        with quiet(hf=True):
            assert transformers_logging.get_verbosity() == transformers_logging.ERROR
            assert not transformers_logging.is_progress_bar_enabled()
        assert transformers_logging.get_verbosity() == transformers_logging.INFO
        assert transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.set_verbosity_warning()
