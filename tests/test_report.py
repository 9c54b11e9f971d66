"""After a study: report page (checked in headless Chromium), dashboard, export -> train."""
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from nas.engine.spec import PatternSpec
from nas.results.dashboard import ATTACHED
from nas.results.report import figures, write_report
from nas.search.config import config_from_dict
from nas.search.optuna_api import study_system_attrs
from nas.search.record import TrialRecord
from nas.search.storage import load_study
from nas.search.study import create_study
from nas.search.worker import run_worker
from tests.testing import ENV, run_cli


@pytest.fixture(scope="module")
def study_cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    cfg = config_from_dict({
        "name": "rep", "trials": 6, "storage": f"sqlite:///{tmp}/rep.db",
        "search_space": {"name": "free", "layers": [6]},
        "baselines": {"templates": ["log", "nearest"], "seeds": [0, 1]},
        "data": {"name": "synthetic", "train_size": 512, "val_size": 256},
        "architecture": {"growth": 4, "bottleneck": False},
        "training": {"epochs": 1, "batch_size": 32}, "sampler": {"name": "random"}})
    run_worker(cfg, study=create_study(cfg), progress=False)
    return cfg


@pytest.mark.slow
def test_report_html_has_every_figure_and_plotlyjs_once(study_cfg, tmp_path):
    study = load_study("rep", study_cfg.storage_url)
    figs = figures(study)
    titles = [f.title for f in figs]
    assert len({f.id for f in figs}) == len(figs)
    for needed in ("Optimization history", "Accuracy vs. MBD", "Accuracy vs. mean distance",
                   "Accuracy vs. connections", "Accuracy vs. parameters",
                   "Parameter importances", "Top 1 pattern", "Top 5 pattern", "log pattern",
                   "dense pattern"):
        assert needed in titles
    out = run_cli("report", "rep", "--storage", study_cfg.storage_url, "--out",
              str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "r.html").read_text()
    for fig in figs:
        assert '<section class="fig' in page and f'id="section-{fig.id}"' in page
        assert f"<h2>{fig.title}</h2>" in page and f'id="{fig.id}"' in page
    assert page.count('class="plotly-graph-div"') == len(titles)
    assert page.count("plotly.js v") == 1  # the library, embedded once
    assert "Principle: accuracy vs. backprop distance" in page and "http" not in page.split(
        "<script", 1)[0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM, reason="scripts/test.sh installs Debian's chromium")
@pytest.mark.slow
def test_report_in_headless_browser(study_cfg, tmp_path):
    from PIL import Image

    page = write_report(load_study("rep", study_cfg.storage_url), tmp_path / "r.html")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000"]
    shot = tmp_path / "shot.png"
    run = subprocess.run(flags + ["--window-size=1200,2000", f"--screenshot={shot}",
                                  page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    non_white = sum(histogram[:250]) / (image.width * image.height)
    assert non_white > 0.02 and sum(1 for c in histogram if c) > 30  # plots, not a blank page
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count('class="main-svg"') >= len(figures(load_study("rep", study_cfg.storage_url)))


@pytest.mark.slow
def test_export_train_round_trip_with_kill_and_resume(study_cfg, tmp_path):
    best = tmp_path / "best.json"
    out = run_cli("export", "rep", "--storage", study_cfg.storage_url, "--out", str(best))
    assert out.returncode == 0, out.stderr
    spec = PatternSpec.load(best)
    study = load_study("rep", study_cfg.storage_url)
    assert spec.origin["accuracy"] == study.best_value and spec.origin["trial"] == \
        study.best_trial.number
    assert spec.hash == TrialRecord.from_trial(study.best_trial).hash

    ckpt = tmp_path / "run.pt"
    args = ["train", str(best), "--dataset", "synthetic", "--epochs", "4", "--batch-size", "16",
            "--checkpoint", str(ckpt), "--json", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL) if killed else None
    proc.wait()
    assert killed, "training finished before it could be killed"
    out = run_cli(*args, "--resume")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["epochs"] == 4 and result["pattern"] == spec.hash
    assert len(result["val_curve"]) == 4


def test_train_rejects_edited_spec_naming_the_field(study_cfg, tmp_path):
    spec = json.loads(PatternSpec.from_dict(
        TrialRecord.from_trial(load_study("rep", study_cfg.storage_url).best_trial).spec
    ).to_json())
    spec["architecture"]["growth"] = "twelve"
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(spec))
    out = run_cli("train", str(path), "--dataset", "synthetic")
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and "architecture.growth" in out.stderr


def test_export_unknown_trial_is_clear(study_cfg):
    out = run_cli("export", "rep", "--storage", study_cfg.storage_url, "--trial", "999")
    assert out.returncode != 0 and "trial 999" in out.stderr


def test_dashboard_serves_study_with_our_plots(study_cfg):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", "rep", "--storage",
                             study_cfg.storage_url, "--port", str(port)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        body, deadline = None, time.time() + 60
        while body is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies",
                                            timeout=5) as r:
                    body = json.load(r)
            except OSError:
                time.sleep(0.3)
        assert body is not None, proc.stderr.read1().decode() if proc.poll() else "no answer"
        assert "rep" in json.dumps(body)
        # DNS rebinding (another Host) and cross-site writes are refused; the study stays.
        study_id = body["study_summaries"][0]["study_id"]
        for headers in ({"Host": f"attacker.example:{port}"},
                        {"Host": f"127.0.0.1:{port}", "Origin": "http://attacker.example"}):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("DELETE", f"/api/studies/{study_id}", headers=headers)
            assert conn.getresponse().status == 403, headers
            conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    study = load_study("rep", study_cfg.storage_url)
    graphs = {k.split(":")[2] for k in study_system_attrs(study)
              if k.startswith("dashboard:plot_data:")}
    shown = {fig.id for fig in figures(study)}
    assert graphs == {f"skipnas-{fig_id}" for fig_id in ATTACHED if fig_id in shown}
    note = "".join(str(v) for k, v in study_system_attrs(study).items() if "note" in k)
    assert "How far the numbers can be trusted" in note and "noise:" in note


def test_cli_analyze_table_and_json(study_cfg):
    out = run_cli("analyze", "rep", "--storage", study_cfg.storage_url, "--json",
                  "--resamples", "50")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    study = load_study("rep", study_cfg.storage_url)
    trained = [t for t in study.trials if not TrialRecord.from_trial(t).is_reused]
    assert result["trials_total"] == len(trained)
    assert {t["template"] for t in result["templates"]} == {"log", "nearest"}
    assert len(result["correlations"]) == 8
    out = run_cli("analyze", "rep", "--storage", study_cfg.storage_url, "--resamples", "50")
    assert out.returncode == 0 and "mean_distance" in out.stdout and "templates" in out.stdout
