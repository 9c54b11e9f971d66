import pytest


@pytest.fixture(autouse=True)
def offline_data_home(tmp_path, monkeypatch):
    """Tests never download, and look for data in a fresh directory (plus system paths)."""
    monkeypatch.setenv("SKIPNAS_OFFLINE", "1")
    monkeypatch.setenv("SKIPNAS_DATA", str(tmp_path / "data-home"))
