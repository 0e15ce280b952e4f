"""The command line, run the way a user runs it."""

import re
import subprocess
import sys


def test_demo_finds_flipped_labels_and_explains_an_error():
    res = subprocess.run(
        [sys.executable, "-m", "skinfluence", "demo"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "135 labels flipped" in out
    rows = dict(re.findall(r"^\s+(\d+)% \| +([\d.]+) \|", out, flags=re.M))
    assert set(rows) == {"5", "10", "20", "30"}
    # self-influence finds far more flips than checking at random would
    assert float(rows["10"]) > 0.5
    assert float(rows["30"]) > 0.9
    assert "most helpful" in out and "most harmful" in out


def test_bad_arguments_exit_nonzero_without_traceback():
    res = subprocess.run(
        [sys.executable, "-m", "skinfluence", "demo", "--noise", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2
    assert "fraction must be in [0, 1]" in res.stderr
    assert "Traceback" not in res.stderr
