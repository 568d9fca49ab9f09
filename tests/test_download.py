"""Downloads against a loopback HTTP server: resume after truncation, md5 refusal, failures table, rerun."""
import argparse
import hashlib
import http.server
import threading

import pytest

from infbrush.data.download import download_all, read_manifest
from infbrush.errors import InfbrushError

FILES = {name: bytes((i * 7 + len(name)) % 256 for i in range(50_000 + 1000 * k))
         for k, name in enumerate(["good.bin", "flaky.bin", "trunc.bin", "badmd5.bin"])}


class Handler(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        if name not in FILES:
            self.send_error(404)
            return
        body = FILES[name]
        start = 0
        rng = self.headers.get("Range")
        Handler.requests.append((name, rng))
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        first_full_get = name == "flaky.bin" and sum(r[0] == name for r in Handler.requests) == 1
        if name == "trunc.bin" or first_full_get:
            self.wfile.write(body[start:start + (len(body) - start) // 2])  # then the connection closes early
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def write_manifest(path):
    lines = ["id\tfilename\tmd5\tsize\tstate"]
    for i, (name, body) in enumerate(FILES.items()):
        md5 = hashlib.md5(body).hexdigest() if name != "badmd5.bin" else "0" * 32
        lines.append(f"uuid-{i}\t{name}\t{md5}\t{len(body)}\treleased")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_download_resumes_verifies_and_records_failures(server, tmp_path):
    manifest = write_manifest(tmp_path / "manifest.tsv")
    out = tmp_path / "slides"
    summary = download_all(read_manifest(manifest), server + "/data/{filename}", out, workers=2, retries=2,
                           retry_wait=0.0, timeout=10, progress=False, log=lambda line: None)
    assert summary["done"] == 2
    for name in ("good.bin", "flaky.bin"):
        assert (out / name).read_bytes() == FILES[name]
    # the flaky file was resumed with a Range request starting where the truncated transfer stopped
    ranges = [r for n, r in Handler.requests if n == "flaky.bin"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(FILES['flaky.bin']) // 2}-"
    assert not (out / "trunc.bin").exists() and not (out / "badmd5.bin").exists()
    assert not (out / "badmd5.bin.part").exists()  # content with a wrong checksum is not kept
    rows = [line.split("\t") for line in (out / "failures.tsv").read_text().splitlines()]
    assert rows[0] == ["path", "reason"]
    reasons = {row[0].rsplit("/", 1)[-1]: row[1] for row in rows[1:]}
    assert set(reasons) == {"trunc.bin", "badmd5.bin"}
    assert "md5" in reasons["badmd5.bin"]
    assert "truncated" in reasons["trunc.bin"] or "size" in reasons["trunc.bin"]

    # a rerun fetches nothing that is already verified
    Handler.requests = []
    again = download_all(read_manifest(manifest), server + "/data/{filename}", out, workers=1, retries=0,
                         retry_wait=0.0, timeout=10, progress=False, log=lambda line: None)
    assert again["present"] == 2 and {n for n, _ in Handler.requests} == {"trunc.bin", "badmd5.bin"}


def test_download_cli_exit_status_and_gdc_template(server, tmp_path):
    from infbrush.cli import download as cli

    manifest = write_manifest(tmp_path / "manifest.tsv")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--manifest", str(manifest), "--url-template", server + "/data/{id}/{filename}",
                              "--out", str(tmp_path / "d"), "--retries", "1", "--retry-wait", "0", "--no-progress"])
    assert cli.main(args) == 1  # two files failed
    assert (tmp_path / "d" / "good.bin").exists()


def test_manifest_errors_name_the_file(tmp_path):
    bad = tmp_path / "m.tsv"
    bad.write_text("id\tname\n1\tx\n")
    with pytest.raises(InfbrushError, match="m.tsv.*filename"):
        read_manifest(bad)
    bad.write_text("id\tfilename\tsize\n1\t../escape\t3\n")
    with pytest.raises(InfbrushError, match="bad filename"):
        read_manifest(bad)
