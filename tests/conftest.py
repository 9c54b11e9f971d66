import pytest

from tests.testing import STORAGES, url_of


@pytest.fixture(autouse=True)
def offline_data_home(tmp_path, monkeypatch):
    """Tests never download, and look for data in a fresh directory (plus system paths)."""
    monkeypatch.setenv("SKIPNAS_OFFLINE", "1")
    monkeypatch.setenv("SKIPNAS_DATA", str(tmp_path / "data-home"))


@pytest.fixture(params=STORAGES)
def storage_url(request, tmp_path):
    """A fresh storage URL of each kind: journal file, SQLite, and PostgreSQL when
    SKIPNAS_TEST_POSTGRES names a server (scripts/test.sh starts one)."""
    return url_of(request.param, tmp_path)
