"""The examples run, and what they leave is read by the commands they point at."""
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nas.engine.spec import PatternSpec
from nas.results.dashboard.notes import attach_plots
from search_spaces import make_space
from search_spaces.spaces import FixedParams
from tests.testing import ENV, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_own_loop_makes_a_study_that_analyze_report_dashboard_and_export_read(tmp_path):
    url = f"sqlite:///{tmp_path}/mine.db"
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "own_loop.py"), "--name", "mine", "--storage",
         url, "--dataset", "synthetic", "--trials", "6", "--layers", "6", "--epochs", "2",
         "--steps", "3", "--train-size", "256", "--val-size", "128"],
        capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    assert f"skipnas export mine --storage {url}" in run.stdout
    study = optuna.load_study(study_name="mine", storage=url)
    assert len(study.trials) == 6 and study.best_trial.user_attrs["val_curve"][-1] == \
        study.best_value

    analyzed = run_cli("analyze", "mine", "--storage", url, "--resamples", "50")
    assert analyzed.returncode == 0, analyzed.stderr
    # The stamped space's budget: offset sets of 6 layers at log's 17 connections.
    assert "6 completed trials at 17 connections (of 6)" in analyzed.stdout
    assert "mean_distance" in analyzed.stdout

    reported = run_cli("report", "mine", "--storage", url, "--out", str(tmp_path / "r.html"))
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Principle: accuracy vs. backprop distance at 17 connections, per_block (n=6)" in page
    assert "Accuracy vs. mean distance" in page

    exported = run_cli("export", "mine", "--storage", url, "--out", str(tmp_path / "best.json"))
    assert exported.returncode == 0, exported.stderr
    spec = PatternSpec.load(tmp_path / "best.json")
    # The pattern the best trial's params decode to, not only what its record says.
    best = make_space("offsets", [6]).suggest(FixedParams(study.best_trial.params))
    assert spec.hash == best.hash and spec.origin["trial"] == study.best_trial.number

    assert attach_plots("mine", url)  # the dashboard's notes, plots and features study
