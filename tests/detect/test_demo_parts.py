"""Pieces of `bindspace demo detect` that run without training: its stage clock."""
from __future__ import annotations

import time

from bindspace.detect.demo import StageClock


def test_the_stage_clock_charges_each_stage_its_own_time():
    clock = StageClock()
    clock.start("busy")
    end = time.process_time() + 0.05
    while time.process_time() < end:  # burn CPU in this stage only
        pass
    clock.start("idle")
    time.sleep(0.05)
    clock.start("busy")  # a stage started again adds up
    clock.stop()
    assert set(clock.wall) == {"busy", "idle"}
    assert clock.cpu["busy"] >= 0.05 and clock.cpu["idle"] < 0.04
    assert clock.wall["idle"] >= 0.05
    wall, cpu = clock.total()
    assert wall >= clock.wall["busy"] + clock.wall["idle"] - 1e-6 and cpu >= clock.cpu["busy"]

