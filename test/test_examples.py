"""The demo's example photos: look-up order and the download, against servers on this machine only."""
import hashlib
import http.server
import threading
from functools import partial

import pytest

from hamer_ros import examples
from hamer_ros.examples import EXAMPLE_FILES, ExamplesError, download_examples, find_examples


def fake_set(folder, names=EXAMPLE_FILES):
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, name in enumerate(names):
        data = f"fake photo {i}".encode() * 50
        (folder / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    return files


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/site; yields (base URL, requested paths)."""
    site = tmp_path / "site"
    site.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", site, requests
    httpd.shutdown()
    httpd.server_close()


def test_the_pinned_files_are_the_reference_examples():
    assert examples.PINNED_COMMIT in examples.BASE_URL and len(examples.PINNED_COMMIT) == 40
    assert sorted(EXAMPLE_FILES) == ["test1.jpg", "test2.jpg", "test3.jpg", "test4.jpg"]
    found = find_examples()
    if found is None:
        pytest.skip(examples.not_found_message())
    for name, sha in EXAMPLE_FILES.items():   # whichever copy the look-up finds is the pinned one
        assert hashlib.sha256((found / name).read_bytes()).hexdigest() == sha, name


def test_lookup_order_env_first_and_incomplete_folders_passed_over(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HAMER_ROS_EXAMPLES", str(tmp_path / "mine"))
    dirs = examples.candidate_dirs()
    assert dirs[0] == tmp_path / "mine" and dirs[1].parts[-3:] == ("shared", "data", "hamer_examples")
    assert dirs[2] == tmp_path / "cache" / "hamer_ros" / "examples"
    fake_set(tmp_path / "mine")
    assert find_examples() == tmp_path / "mine"
    (tmp_path / "mine" / "test3.jpg").unlink()   # incomplete: the next folder that has them all wins
    assert find_examples() != tmp_path / "mine"
    monkeypatch.delenv("HAMER_ROS_EXAMPLES")
    assert examples.candidate_dirs()[0] == dirs[1]


def test_download_checks_and_caches_each_file(tmp_path, server):
    url, site, requests = server
    files = fake_set(site)
    dest = tmp_path / "cache"
    assert download_examples(dest, base_url=url, files=files) == dest
    for name in files:
        assert (dest / name).read_bytes() == (site / name).read_bytes()
    assert sorted(requests) == sorted(f"/{n}" for n in files)
    download_examples(dest, base_url=url, files=files)   # already there and intact: nothing fetched
    assert len(requests) == len(files)
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)


def test_file_url_works_too(tmp_path):
    files = fake_set(tmp_path / "src")
    download_examples(tmp_path / "dest", base_url=(tmp_path / "src").as_uri() + "/", files=files)
    assert all((tmp_path / "dest" / n).is_file() for n in files)


def test_checksum_mismatch_keeps_nothing_wrong(tmp_path, server):
    url, site, _ = server
    files = fake_set(site)
    files["test2.jpg"] = "0" * 64
    dest = tmp_path / "cache"
    with pytest.raises(ExamplesError) as e:
        download_examples(dest, base_url=url, files=files)
    msg = str(e.value)
    assert f"{url}test2.jpg has SHA-256 {hashlib.sha256((site / 'test2.jpg').read_bytes()).hexdigest()}" in msg
    assert "expected " + "0" * 64 in msg and "HAMER_ROS_EXAMPLES" in msg and "\n" not in msg
    assert sorted(p.name for p in dest.iterdir()) == ["test1.jpg"]   # checked ones only, no partial file


def test_offline_is_one_clear_line(tmp_path, server):
    url, site, _ = server   # nothing served: 404, like a moved file
    with pytest.raises(ExamplesError) as e:
        download_examples(tmp_path / "c", base_url=url, files={"test1.jpg": "0" * 64})
    assert "cannot download the example photos" in str(e.value) and ": HTTP 404 " in str(e.value)
    with pytest.raises(ExamplesError) as e:   # nothing listening at all
        download_examples(tmp_path / "c", base_url="http://127.0.0.1:9/", files={"test1.jpg": "0" * 64},
                          timeout=5)
    msg = str(e.value)
    assert "HAMER_ROS_EXAMPLES" in msg and "bash scripts/run.sh infer" in msg and "\n" not in msg


def test_main_prints_the_folder_or_one_error_line(tmp_path, monkeypatch, capsys):
    fake_set(tmp_path / "mine")
    monkeypatch.setenv("HAMER_ROS_EXAMPLES", str(tmp_path / "mine"))
    assert examples.main() == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mine")
    monkeypatch.setattr(examples, "find_examples", lambda: None)          # as in a clone alone
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(examples, "BASE_URL", "http://127.0.0.1:9/")     # offline
    assert examples.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("example photos not found locally: downloading")
    assert len(err) == 2 and err[1].startswith("error: cannot download the example photos")
