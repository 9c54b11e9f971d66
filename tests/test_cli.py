"""The command line as a user meets it: a config or a name for every read command, `--version`,
help when nothing is asked, a "did you mean" for a mistyped study name."""
import pytest

from nas.cli import main
from nas.search.config import load_config
from nas.search.experiment.study import create_study
from tests.testing import run_cli, tiny_raw, write_toml


@pytest.fixture
def elsewhere(tmp_path):
    """A queued study whose config names a storage other than the default."""
    config = write_toml(tmp_path / "mine.toml", tiny_raw(
        tmp_path, name="mine", storage=f"sqlite:///{tmp_path}/elsewhere.db"))
    create_study(load_config(config))
    return config


def test_read_commands_take_the_config_or_the_name(elsewhere, tmp_path, capsys):
    """`analyze mine.toml` said "studies/mine.toml.db does not exist", and a name needed the
    config's --storage repeated."""
    assert main(["study", "status", str(elsewhere)]) == 0
    assert "mine" in capsys.readouterr().out
    url = f"sqlite:///{tmp_path}/elsewhere.db"
    assert main(["study", "status", "mine", "--storage", url]) == 0
    capsys.readouterr()
    assert main(["export", str(elsewhere), "--out", str(tmp_path / "b.json")]) == 2
    assert "no completed trial" in capsys.readouterr().err   # found the study, nothing to export


def test_a_mistyped_study_name_gets_a_suggestion(elsewhere, tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/elsewhere.db"
    assert main(["study", "status", "mien", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "no study 'mien'" in err and "did you mean 'mine'?" in err
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "quickstart.db").touch()
    out = run_cli("study", "status", "quikstart", cwd=tmp_path)
    assert out.returncode == 2 and "did you mean 'quickstart'?" in out.stderr


def test_version_and_help_when_nothing_is_asked():
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("skipnas ")
    bare = run_cli()
    assert bare.returncode == 2 and bare.stderr.startswith("usage: skipnas")
    assert "skipnas: error: skipnas:" not in bare.stderr
