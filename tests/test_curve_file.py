"""The one curve.jsonl reader (harness/tracking/curve.py) and its rule for bad lines, as seen by every
consumer: collect, the fitting CLI and the run plot.

Rule: a torn LAST line (a run killed mid-write) is skipped with a note naming the file; a bad line
anywhere else is an error naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.collect import collect, main as collect_main
from harness.fit.cli import main as fit_main
from harness.fit.io import InputError, read_curve_jsonl
from harness.tracking.curve import CurveFileError, CurveWriter, read_curve, read_curve_lines
from harness.tracking.plot import plot_curve

ROWS = [{"step": s, "lr": 1e-3, "loss": 4.0 - 0.1 * s, **({"val_loss": 4.1 - 0.1 * s} if s % 2 == 0 else {})}
        for s in range(1, 9)]
COMPLETE = "".join(json.dumps(r) + "\n" for r in ROWS)
TORN = COMPLETE + '{"step": 9, "lr": 0.001, "lo'  # killed mid-write
BAD_MIDDLE = "".join(json.dumps(r) + "\n" for r in ROWS[:3]) + "{oops\n" + "".join(json.dumps(r) + "\n" for r in ROWS[3:])


def _write(tmp_path: Path, text: str, run: str = "run") -> Path:
    path = tmp_path / run / "curve.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_torn_last_line_is_skipped_with_a_note(tmp_path, capsys):
    path = _write(tmp_path, TORN)
    assert read_curve(path) == ROWS
    err = capsys.readouterr().err
    assert f"note: {path}: line 9 is incomplete" in err and "skipped" in err


def test_bad_middle_line_is_an_error_naming_file_and_line(tmp_path):
    path = _write(tmp_path, BAD_MIDDLE)
    with pytest.raises(CurveFileError, match=rf"{path}, line 4: not a JSON object"):
        read_curve(path)
    # A bad last line that DID end with a newline was written whole: also an error, not a tear.
    path.write_text(COMPLETE + "[1, 2]\n")
    with pytest.raises(CurveFileError, match="line 9"):
        read_curve(path)


def test_complete_last_line_without_newline_is_kept_and_blank_lines_ignored(tmp_path, capsys):
    path = _write(tmp_path, COMPLETE.replace("\n", "\n\n", 1) + json.dumps({"step": 9, "lr": 1e-3, "loss": 3.0}))
    numbered = read_curve_lines(path)
    assert [r["step"] for _, r in numbered] == list(range(1, 10))
    assert numbered[1][0] == 3  # line numbers count the blank line
    assert "note" not in capsys.readouterr().err
    assert read_curve(tmp_path / "absent.jsonl") == []


def test_writer_resume_drops_the_torn_line(tmp_path):
    path = _write(tmp_path, TORN)
    assert CurveWriter(path).truncate_after(8) == 8
    writer = CurveWriter(path).open()
    writer.append({"step": 9, "lr": 1e-3, "loss": 3.1})
    writer.close()
    assert [r["step"] for r in read_curve(path)] == list(range(1, 10))


def _run_dir(tmp_path: Path, curve_text: str) -> Path:
    run = _write(tmp_path, curve_text, run="sweep/r1").parent
    (run / "config.yaml").write_text("name: r1\ntrain:\n  steps: 8\n")
    (run / "status.json").write_text(json.dumps({
        "state": "completed", "step": 8, "params": 100, "params_non_embedding": 80, "params_active": 100,
        "flops_per_token": 600, "tokens": 800, "flops": 480000, "final_loss": 3.2, "final_val_loss": 3.3}))
    return run


def test_collect_skips_a_torn_line_and_stops_on_a_bad_one(tmp_path, capsys):
    run = _run_dir(tmp_path, TORN)
    frame = collect(tmp_path / "sweep")
    assert frame["min_val_loss"].iloc[0] == pytest.approx(min(r["val_loss"] for r in ROWS if "val_loss" in r))
    assert f"note: {run / 'curve.jsonl'}: line 9 is incomplete" in capsys.readouterr().err

    (run / "curve.jsonl").write_text(BAD_MIDDLE)
    out = tmp_path / "table"
    assert collect_main([str(tmp_path / "sweep"), "--out", str(out)]) == 2
    assert f"error: {run / 'curve.jsonl'}, line 4: not a JSON object" in capsys.readouterr().err
    assert not out.with_suffix(".csv").exists() and not out.with_suffix(".parquet").exists()


def test_fitting_reader_and_cli_follow_the_same_rule(tmp_path, capsys):
    path = _write(tmp_path, TORN)
    curve = read_curve_jsonl(path)
    assert curve.step.tolist() == list(range(1, 9))
    assert "line 9 is incomplete" in capsys.readouterr().err

    path.write_text(BAD_MIDDLE)
    with pytest.raises(InputError, match=rf"{path}, line 4"):
        read_curve_jsonl(path)
    out = tmp_path / "fit"
    assert fit_main(["curve", "--law", "power", "--fit", str(path), "--out", str(out)]) == 2
    assert f"{path}, line 4: not a JSON object" in capsys.readouterr().err and not out.exists()


def test_run_plot_follows_the_same_rule(tmp_path, capsys):
    path = _write(tmp_path, TORN)
    png = plot_curve(path, tmp_path / "curve.png")
    assert png.stat().st_size > 1000
    assert "line 9 is incomplete" in capsys.readouterr().err
    path.write_text(BAD_MIDDLE)
    with pytest.raises(CurveFileError, match="line 4"):
        plot_curve(path, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
