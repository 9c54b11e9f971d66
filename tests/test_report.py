"""After a study: report page (checked in headless Chromium), dashboard, export -> train."""
import contextlib
import html
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import plotly.graph_objects as go
import pytest

from nas.engine.spec import PatternSpec
from nas.results.analysis import SIGNIFICANT, analyze, regression_caption, regression_table
from nas.results.dashboard.notes import ATTACHED
from nas.results.feature_study import FEATURES_SUFFIX
from nas.results.report import figures, write_report
from nas.search._optuna.api import study_system_attrs
from nas.search.config import config_from_dict
from nas.search.execution.worker import run_worker
from nas.search.experiment.evidence import answer as evidence_answer
from nas.search.experiment.study import create_study
from nas.search.record import TrialRecord
from nas.search.storage.backends import load_study, open_storage
from nas.stats import Regression
from nas.text_tables import format_table, html_table
from search_spaces import offsets_in_words
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
                   "Accuracy vs. parameters", "Which pattern features matter", "Top 1 pattern",
                   "Top 5 pattern", "log pattern", "nearest pattern"):
        assert needed in titles
    # Every pattern has the budget's connections: a plot against them would say nothing.
    assert {t.user_attrs["connections"] for t in study.trials} == {study.trials[0].user_attrs[
        "connections"]} and "Accuracy vs. connections" not in titles
    importances = next(f.figure for f in figs if f.id == "feature-importances")
    assert "mean_distance" in importances.data[0].y and "offset_2" not in importances.data[0].y
    log = next(f.figure for f in figs if f.id == "log-pattern")
    assert "over 2 seeds" in log.layout.title.text
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


@contextlib.contextmanager
def dashboard(cfg):
    """`skipnas dashboard` on a free loopback port: yields (port, the /api/studies answer)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", cfg.name, "--storage",
                             cfg.storage_url, "--port", str(port)], env=ENV,
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
        yield port, body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_serves_study_with_our_plots(study_cfg):
    from optuna_dashboard import save_plotly_graph_object
    # A plot an older skipnas attached and this one no longer does (the storage keeps it).
    save_plotly_graph_object(load_study("rep", study_cfg.storage_url), go.Figure(),
                             graph_object_id="skipnas-feature-importances")
    with dashboard(study_cfg) as (port, body):
        assert "rep" in json.dumps(body)
        # DNS rebinding (another Host) and cross-site writes are refused; the study stays.
        study_id = body["study_summaries"][0]["study_id"]
        for headers in ({"Host": f"attacker.example:{port}"},
                        {"Host": f"127.0.0.1:{port}", "Origin": "http://attacker.example"}):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("DELETE", f"/api/studies/{study_id}", headers=headers)
            assert conn.getresponse().status == 403, headers
            conn.close()
        # The Best Trial card lists the best trial's pattern in words, not the sampler's keys;
        # the trials themselves keep their keys.
        ids = {s["study_name"]: s["study_id"] for s in body["study_summaries"]}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{ids['rep']}",
                                    timeout=10) as r:
            detail = json.load(r)
        # The Hyperparameter Importance card ranks pattern features, not the keys.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{ids['rep']}/"
                                    f"param_importances", timeout=60) as r:
            (importances,) = json.load(r)["param_importances"]
    study = load_study("rep", study_cfg.storage_url)
    best = study.best_trial
    (card,) = detail["best_trials"]
    shown = {p["name"]: p["param_external_value"] for p in card["params"]}
    pattern = PatternSpec.from_dict(TrialRecord.from_trial(best).spec).pattern
    assert card["number"] == best.number
    assert shown["pattern"].startswith(offsets_in_words(pattern))
    assert float(shown["mean_distance"]) == pytest.approx(best.user_attrs["mean_distance"],
                                                          rel=1e-5)
    assert not set(shown) & set(best.params)
    # Slice, Contour and Rank read the answer's params in the browser: each search trial has
    # its pattern features first, then its keys, and the search space leads with the features.
    keyed = next(t for t in study.trials if t.params)   # a search trial
    params = {p["name"]: p["param_external_value"] for p in detail["trials"][keyed.number][
        "params"]}
    assert list(params)[-len(keyed.params):] == list(keyed.params)
    assert float(params["mean_distance"]) == pytest.approx(keyed.user_attrs["mean_distance"])
    space = [p["name"] for p in detail["union_search_space"]]
    assert space[:3] == list(params)[:3] and set(space) >= {"mbd", "params"} | set(keyed.params)
    baseline = next(t for t in detail["trials"]
                    if any(a["key"] == "baseline" for a in t["user_attrs"]))
    assert "mean_distance" in {p["name"] for p in baseline["params"]}   # no keys, features
    assert {g["id"] for g in detail["plotly_graph_objects"]} == {
        f"skipnas-{fig_id}" for fig_id in ATTACHED if fig_id in {f.id for f in figures(study)}}
    ranked = {i["name"] for i in importances}
    assert {"mean_distance", "mbd", "params"} <= ranked and not ranked & set(best.params)
    note = "".join(str(v) for k, v in study_system_attrs(study).items() if "note" in k)
    assert "How far the numbers can be trusted" in note and "noise:" in note
    assert note.index("## Which pattern to train") < note.index("How far the numbers")
    assert "| training.epochs | 1 |" in note and "reads 1 back" in note  # config, trial notes
    assert study.metric_names == ["val_accuracy"]
    # The features study: every trained pattern, its features as params, for importances.
    features = load_study("rep" + FEATURES_SUFFIX, study_cfg.storage_url)
    trained = [t for t in study.trials if not TrialRecord.from_trial(t).is_reused]
    assert len(features.trials) == len(trained) and features.metric_names == ["val_accuracy"]
    assert {"mean_distance", "mbd", "params"} <= set(features.trials[0].params)
    by_trial = {t.user_attrs["trial"]: t for t in features.trials}
    for t in trained:
        assert by_trial[t.number].values == t.values
        assert by_trial[t.number].params["mean_distance"] == pytest.approx(
            t.user_attrs["mean_distance"])


@pytest.mark.skipif(not CHROMIUM, reason="scripts/test.sh installs Debian's chromium")
@pytest.mark.slow
def test_dashboard_pages_in_a_browser_name_the_metric_and_the_features(study_cfg, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
             "--window-size=1400,2400"]
    with dashboard(study_cfg) as (port, body):
        ids = {s["study_name"]: s["study_id"] for s in body["study_summaries"]}
        for name, wanted in (("rep", "val_accuracy"), ("rep", "pattern: reads 1 back"),
                             ("rep" + FEATURES_SUFFIX, "mean_distance")):
            dom = subprocess.run(flags + ["--dump-dom",
                                          f"http://127.0.0.1:{port}/dashboard/studies/"
                                          f"{ids[name]}"],
                                 capture_output=True, text=True, timeout=120).stdout
            assert wanted in dom, (name, dom[-2000:])


def test_the_reports_answer_is_the_analysis(study_cfg, tmp_path):
    study = load_study("rep", study_cfg.storage_url)
    result = analyze(study, resamples=200)
    page = write_report(study, tmp_path / "r.html", result.principle).read_text()
    first = re.search("<h2>([^<]+)</h2><p>([^<]+)</p>", page)
    assert first.group(1) == "Which pattern to train"   # the answer comes first on the page
    assert html.unescape(first.group(2)) == evidence_answer(result.evidence).sentence
    answer = html.unescape(re.sub("<[^>]+>", " ", page.split(
        "<h2>The principle in this study</h2>", 1)[1].split("<h2>", 1)[0]))
    c = result.principle.correlation()
    ctrl = result.principle.correlation(controlled_for="params")
    for x in (c, ctrl):
        r = x.rank.r
        assert f"r = {r.value:+.3f}, 95% CI [{r.low:+.3f}, {r.high:+.3f}]" in answer
        assert f"p = {x.rank.p_value:.4f}" in answer
    s = result.principle.slope.slope
    assert f"{s.value:+.4f} accuracy per unit of mean distance" in answer
    assert "r < 0 is the principle's prediction" in answer and "brief training" in answer
    r = c.rank.r
    words = ("Yes: shorter" if r.value < 0 else "No, the opposite") \
        if c.rank.p_value < SIGNIFICANT and (r.high < 0 or r.low > 0) else "Not shown"
    assert answer.lstrip().startswith(words)
    if words == "Not shown":   # and says whether the study could have shown it
        assert f"With {c.n} patterns, a correlation of the size this project published" in answer
    assert result.to_json()["slope"]["slope"] == s.value
    # The regression (issue 38 item 5): its sentence in the answer, its table under it.
    reg = result.principle.regression
    d = reg.coefficient("mean_distance").estimate
    assert f"mean distance went with {d.value:+.4f} accuracy per unit" in answer
    head, *notes = regression_caption(reg)
    assert f"<h2>{html.escape(head)}</h2>" + html_table(*regression_table(reg)) + "".join(
        f"<p>{html.escape(note)}</p>" for note in notes) in page


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
    reg = Regression.from_json(result["regression"])
    assert reg.n == result["trials_at_budget"]
    head, *notes = regression_caption(reg)
    assert "\n".join([head, format_table(*regression_table(reg)), *notes]) in out.stdout


def test_a_trial_is_shown_with_its_role(study_cfg, tmp_path, capsys):
    """Wherever a trial is named (status, the trust lines, the top patterns' panels, the
    dashboard's trial table and notes) its role says what it is: a baseline was shown as the
    unlabelled "best". Trials stored before workers wrote the role get it from the dashboard's
    preparation, which also notes each confirm trial."""
    from optuna_dashboard import get_note

    from nas.cli import main
    from nas.results.dashboard.notes import attach_plots
    from nas.search._optuna.api import live_trial, trial_id
    from nas.search.experiment.evidence import describe_best
    from nas.search.experiment.study import study_evidence
    from nas.search.record import ROLE_ATTR

    study = load_study("rep", study_cfg.storage_url)
    assert {t.user_attrs[ROLE_ATTR] for t in study.trials} == {
        "search", "baseline:log", "baseline:nearest"}
    ev = study_evidence(study)
    assert ev.best is not None
    best, role = ev.best.number, study.trials[ev.best.number].user_attrs[ROLE_ATTR]
    assert f"(trial {best} ({role}), one run" in describe_best(ev)
    top = next(f for f in figures(study, ev) if f.id == "top-1-pattern")
    assert f"trial {best} ({role}), accuracy" in top.figure.layout.title.text
    assert main(["study", "status", "rep", "--storage", study_cfg.storage_url]) == 0
    assert f"best: trial {best} ({role}), pattern" in capsys.readouterr().out
    # A study stored before roles were, with a confirm run of the nearest template.
    url = f"sqlite:///{tmp_path}/old.db"
    old = optuna.create_study(study_name="old", storage=open_storage(url), direction="maximize")
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    nearest = next(t for t in trained if t.user_attrs[ROLE_ATTR] == "baseline:nearest")

    def stored_before_roles(t, **attrs):
        return optuna.trial.create_trial(
            value=t.value, params=t.params, distributions=t.distributions,
            user_attrs={k: v for k, v in {**t.user_attrs, **attrs}.items() if k != ROLE_ATTR})

    old.add_trials([stored_before_roles(t) for t in trained]
                   + [stored_before_roles(nearest, slot="confirm")])
    attach_plots("old", url)
    old = load_study("old", url)
    assert [t.user_attrs[ROLE_ATTR] for t in old.trials] == [
        t.user_attrs[ROLE_ATTR] for t in trained] + ["confirm:nearest"]
    note = get_note(live_trial(old, trial_id(old.trials[-1])))
    assert "confirm:nearest" in note and nearest.user_attrs["hash"] in note


def test_the_importance_card_reads_the_features_study_while_it_exists(study_cfg, tmp_path):
    """The study's importances are answered from its features study, found by name on each
    request (another dashboard may store it again); without one, Optuna's own answer."""
    from nas.results.dashboard.middleware import importances_over_features
    from nas.results.dashboard.notes import attach_plots

    seen = []

    def app(environ, start_response):
        seen.append(environ["PATH_INFO"])
        return [b""]

    storage = open_storage(study_cfg.storage_url)
    study = load_study("rep", study_cfg.storage_url)
    assert attach_plots("rep", study_cfg.storage_url)   # its features vary
    routed = importances_over_features(app, storage, study._study_id, "rep" + FEATURES_SUFFIX)
    features = storage.get_study_id_from_name("rep" + FEATURES_SUFFIX)
    for path in (f"/api/studies/{study._study_id}/param_importances",
                 f"/api/studies/{study._study_id}"):
        routed({"PATH_INFO": path}, None)
    assert seen == [f"/api/studies/{features}/param_importances",
                    f"/api/studies/{study._study_id}"]
    routed = importances_over_features(app, storage, study._study_id, "gone.features")
    routed({"PATH_INFO": f"/api/studies/{study._study_id}/param_importances"}, None)
    assert seen[-1] == f"/api/studies/{study._study_id}/param_importances"
    # A study whose trained patterns share every feature has no importances to show.
    url = f"sqlite:///{tmp_path}/same.db"
    same = optuna.create_study(study_name="same", storage=open_storage(url),
                               direction="maximize")
    trained = next(t for t in study.trials if TrialRecord.from_trial(t).hash is not None)
    same.add_trials([trained, trained])
    assert not attach_plots("same", url)


def test_the_features_study_reads_as_the_search_went(study_cfg):
    """Issue 40: the features study's trials were added best first, all at one instant, so
    its History fell and its Timeline put every trial in one millisecond."""
    from nas.results.dashboard.notes import attach_plots

    attach_plots("rep", study_cfg.storage_url)
    study = load_study("rep", study_cfg.storage_url)
    features = load_study("rep" + FEATURES_SUFFIX, study_cfg.storage_url).trials
    sources = [study.trials[t.user_attrs["trial"]] for t in features]
    assert [t.number for t in sources] == sorted(t.number for t in sources)
    assert [(t.datetime_start, t.datetime_complete) for t in features] == \
        [(t.datetime_start, t.datetime_complete) for t in sources]
    assert len({t.datetime_start for t in features}) == len(features) > 1


def test_the_dashboard_never_replaces_a_users_study_named_like_its_features_study(study_cfg,
                                                                                   tmp_path):
    from nas.errors import UserError
    from nas.results.feature_study import features_study

    url = f"sqlite:///{tmp_path}/mine.db"
    study = load_study("rep", study_cfg.storage_url)
    copy = optuna.create_study(study_name="rep", storage=url, directions=study.directions)
    copy.add_trials(study.get_trials())
    mine = optuna.create_study(study_name="rep" + FEATURES_SUFFIX, storage=url)
    mine.enqueue_trial({"x": 1.0})
    with pytest.raises(UserError, match="not the features study"):
        features_study(copy, url)
    assert len(load_study("rep" + FEATURES_SUFFIX, url).trials) == 1   # left as it was
    optuna.delete_study(study_name="rep" + FEATURES_SUFFIX, storage=url)
    made = features_study(copy, url)
    assert len(features_study(copy, url).trials) == len(made.trials)   # ours: replaced


@pytest.mark.parametrize("lines", [1, 3, 6])
def test_a_pattern_heatmaps_title_hangs_above_its_plot_within_a_dashboard_card(lines):
    """The title of a pattern's heatmap (its accuracy, its offsets in words, its distances)
    has a top margin of its own below the tool bar, however many lines it takes: Plotly's
    default put the first line mid-margin, so four lines ran into the plot in
    optuna-dashboard's 450 px cards."""
    from nas.results.report import _heatmap
    from search_spaces import template_pattern

    fig = _heatmap(template_pattern("log", [24]), "<br>".join(["a line"] * lines))
    layout = fig.layout
    total = lines + 1  # the distances' line is added
    assert layout.height <= 450
    # Top-anchored in the figure, starting below the tool bar (~40 px), each line 1.3 x the
    # font's size (Plotly's line spacing; its default title font is 17 px).
    assert (layout.title.yref, layout.title.yanchor) == ("container", "top")
    first_line = (1 - layout.title.y) * layout.height
    line = 1.3 * (layout.title.font.size or 17)
    assert first_line >= 40 and first_line + line * total <= layout.margin.t


def test_the_dashboard_answer_the_best_trial_filter_rewrites_keeps_its_shape():
    """best_trials_in_words rewrites optuna-dashboard's internal /api/studies/{id} answer: the
    real app's answer (the pinned version) still has the fields it reads and replaces, and a
    string parameter is listed exactly as card_params builds one."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import save_plotly_graph_object, wsgi

    from nas.results.dashboard.middleware import best_trials_in_words, card_params, with_features
    from nas.results.feature_study import FeatureRow

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="shape", direction="maximize")
    study.enqueue_trial({"c": "a", "x": 0.5})
    def objective(t):
        t.set_user_attr("hash", "h")   # a search trial, without a spec
        return t.suggest_float("x", 0, 1) + (t.suggest_categorical("c", ["a"]) == "a")

    study.optimize(objective, n_trials=1)
    confirm = study.ask()   # Optuna's best, at another fidelity: the card keeps the search's
    confirm.set_user_attr("slot", "confirm")
    confirm.set_user_attr("hash", "h")
    study.tell(confirm, 9.0)
    save_plotly_graph_object(study, go.Figure(), graph_object_id="skipnas-gone")
    save_plotly_graph_object(study, go.Figure(), graph_object_id="users")

    def get(app):
        environ, answer = {}, []
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = f"/api/studies/{study._study_id}"
        body = b"".join(app(environ, lambda status, headers, exc_info=None:
                            answer.append((status, headers))))
        assert answer[0][0].startswith("200"), answer
        return json.loads(body), dict(answer[0][1])

    detail, _ = get(wsgi(storage))
    (best,) = detail["best_trials"]
    assert best["number"] == 1   # Optuna's best: the confirm run
    search, confirm_run = detail["trials"]
    assert isinstance(best["trial_id"], int) and isinstance(best["params"], list)
    param = next(p for p in search["params"] if p["name"] == "c")
    (ours,) = card_params(FeatureRow(trial=0, hash="h", offsets="a", accuracy=1.0, values={}))
    assert set(param) == set(ours) and set(param["distribution"]) == set(ours["distribution"])
    assert param["param_external_pytyp"] == ours["param_external_pytyp"]
    assert param["distribution"]["type"] == ours["distribution"]["type"]
    assert [set(c) for c in param["distribution"]["choices"]] == \
        [set(c) for c in ours["distribution"]["choices"]]
    # with_features adds params and search-space entries shaped as the real ones.
    featured = json.loads(json.dumps(detail))
    with_features(featured, {n: FeatureRow(trial=n, hash="h", offsets="a", accuracy=1.0,
                                           values={"f": float(n)}) for n in (0, 1)}, every=True)
    x = next(p for p in search["params"] if p["name"] == "x")
    f = featured["trials"][0]["params"][0]
    assert (f["name"], f["param_external_pytyp"]) == ("f", x["param_external_pytyp"])
    assert set(f) == set(x) and f["distribution"].keys() == x["distribution"].keys()
    (x_space,) = [s for s in detail["union_search_space"] if s["name"] == "x"]
    for space in ("union_search_space", "intersection_search_space"):
        assert featured[space] == [{"name": "f", "distribution": f["distribution"]}] + detail[
            space] and x_space.keys() == featured[space][0].keys()
    graphs = detail["plotly_graph_objects"]
    assert all(isinstance(g["id"], str) for g in graphs) and len(graphs) == 2
    # The filter runs over the real answer: the stale skipnas plot goes, the rest stays.
    filtered, headers = get(best_trials_in_words(wsgi(storage), storage, study._study_id))
    assert [g["id"] for g in filtered["plotly_graph_objects"]] == ["users"]
    # N6: the card shows the search's best, not a confirm run (Optuna's best); without a
    # spec the trial keeps its keys.
    assert filtered["best_trials"] == [search]
    assert int(headers["Content-Length"]) == len(json.dumps(filtered).encode())


def test_the_dashboard_refuses_an_untested_optuna_dashboard_in_one_line(monkeypatch, tmp_path):
    from importlib.metadata import version

    from nas.errors import UserError
    from nas.results.dashboard.server import TESTED_DASHBOARD, check_dashboard_version, serve

    check_dashboard_version()   # the installed one is the tested one
    assert tuple(int(p) for p in version("optuna-dashboard").split(".")[:2]) == TESTED_DASHBOARD
    tested = ".".join(map(str, TESTED_DASHBOARD))
    check_dashboard_version(f"{tested}.7")
    for other in ("0.15.1", "0.22.0", "1.21.0", "nonsense"):
        with pytest.raises(UserError) as e:
            check_dashboard_version(other)
        message = str(e.value)
        assert "\n" not in message and other in message and f"{tested}.x" in message
    # pyproject pins the same minor version.
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.version import Version
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml")
                            .read_text())["project"]
    (req,) = [Requirement(r) for r in project["dependencies"]
              if Requirement(r).name == "optuna-dashboard"]
    major, minor = TESTED_DASHBOARD
    assert Version(f"{tested}.0") in req.specifier and Version(f"{tested}.99") in req.specifier
    assert Version(f"{major}.{minor + 1}.0") not in req.specifier
    assert Version(f"{major}.{minor - 1}.99") not in req.specifier
    # `skipnas dashboard` checks first, before it opens the storage or a port.
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.15.0")
    with pytest.raises(UserError, match=r"optuna-dashboard 0\.15\.0 is installed"):
        serve("none", f"sqlite:///{tmp_path}/none.db")
    assert not (tmp_path / "none.db").exists()


def test_a_config_string_stays_inside_its_cell_of_the_dashboard_note():
    """N6: a newline in a config string left the note's Markdown table, and what followed was
    rendered as Markdown (an image fetched from another host)."""
    from nas.results.dashboard.notes import config_markdown

    evil = "a|b\n\n![x](http://attacker.example/p.png)\r\n# heading"
    md = config_markdown({"data": {"root": evil, "name": "fashion_mnist"}})
    lines = md.splitlines()
    assert len(lines) == 4 and all(line.startswith("| ") and line.endswith(" |")
                                   for line in lines[2:])
    root = lines[2]
    assert "![" not in root and "](" not in root and "\n#" not in md
    # Unescaped, the cell reads as the text on one line; its pipes are not column breaks.
    cell = root.removeprefix("| data.root | ").removesuffix(" |")
    assert re.sub(r"\\(.)", r"\1", cell) == " ".join(evil.splitlines())
    assert not re.search(r"(?<!\\)\|", cell)


def test_a_template_panel_draws_the_pattern_its_runs_trained(study_cfg):
    """Issue 40: the report's nearest panel drew the template at its own K (115 connections,
    MBD 5) beside the accuracy of runs that trained it at the study's budget (99, MBD 6)."""
    study = load_study("rep", study_cfg.storage_url)
    shown = {f.id: f.figure.layout.title.text for f in figures(study)}
    for name in ("log", "nearest"):
        runs = [r for r in (TrialRecord.from_trial(t) for t in study.trials)
                if r.baseline == name and r.spec is not None]
        trained = {(r.connections, r.mbd) for r in runs}
        assert len(trained) == 1, trained
        ((connections, mbd),) = trained
        assert f"{connections} connections, MBD {mbd}," in shown[f"{name}-pattern"]
        assert f"over {len(runs)} seeds" in shown[f"{name}-pattern"]
