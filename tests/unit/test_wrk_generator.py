"""The bench's wrk generator (`loadtest.wrk`), its Python side: the data file the script
reads, the result line it prints, and a run through a stand-in ``wrk`` on the PATH (the real
one drives a server in `tests/e2e/test_wrk_generator.py`)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from loadtest import wrk
from loadtest.bench import parse_args
from loadtest.client import run_async

pytestmark = pytest.mark.unit

RESULT = ('WRK_RESULT {"requests":200,"duration_us":2000000,"bytes":9000,"non_2xx_3xx":3,'
          '"connect_errors":0,"read_errors":1,"write_errors":0,"timeouts":2,"p50_us":1500,'
          '"p99_us":9000,"p999_us":12000,"max_us":15000,"adds":121,"views":80}')


def test_the_data_file_has_one_line_per_cart_and_refuses_fields_with_spaces() -> None:
    text = wrk.cart_lines([("c1", "t.k.n", [("p1", "v1"), ("p2", "v2")]), ("c2", "tok", [])])
    assert text == "c1 t.k.n p1 v1 p2 v2\nc2 tok\n"
    with pytest.raises(wrk.WrkError, match="spaces"):
        wrk.cart_lines([("c 1", "tok", [])])
    with pytest.raises(wrk.WrkError):
        wrk.cart_lines([("c1", "", [])])


def test_the_result_line_is_found_among_wrk_s_own_lines() -> None:
    output = f"Running 2s test @ http://x\n  2 threads and 8 connections\n{RESULT}\n"
    assert wrk.parse(output)["adds"] == 121
    with pytest.raises(wrk.WrkError, match="no result"):
        wrk.parse("Running 2s test @ http://x\n")


def _stand_in(directory: Path, body: str) -> None:
    """A ``wrk`` executable in ``directory`` running Python ``body`` (argv in ``sys.argv``)."""
    path = directory / "wrk"
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_a_run_reports_the_figures_of_a_phase(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the stand-in checks the data file it is given, burns some CPU and prints the result
    _stand_in(tmp_path, "\n".join([
        "args = sys.argv[sys.argv.index('--') + 1:]",
        "assert open(args[0]).read() == 'c1 tok p1 v1\\n', args",
        f"assert args[1:] == ['0.6', '7', '{min(wrk.THREADS, 8)}'], args",
        "n = sum(i * i for i in range(3_000_000))",
        f"print('Running'); print({RESULT!r})"]))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cpu = iter([10.0, 10.5])
    row = run_async(wrk.run("http://127.0.0.1:1", [("c1", "tok", [("p1", "v1")])],
                            add_share=0.6, connections=8, duration_s=2, seed=7,
                            server_cpu=lambda: next(cpu)))
    assert row["generator"] == "wrk" and row["requests"] == 200
    assert row["requests_per_s"] == 100.0 and row["seconds"] == 2.0
    assert (row["p50_ms"], row["p99_ms"], row["p999_ms"], row["max_ms"]) == (1.5, 9, 12, 15)
    assert row["errors"] == {"non_2xx_3xx": 3, "read_error": 1, "timeout": 2}
    assert row["error_count"] == 6 and row["statuses"] == {"2xx/3xx": 197}
    assert row["server_cpu_ms_per_request"] == 2.5  # 0.5 s over 200 requests
    assert row["client_cpu_ms_per_request"] > 0  # the stand-in's own CPU, from wait4
    assert row["operations"] == {"add": 121, "view": 80}


def test_a_failed_or_silent_wrk_is_an_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    _stand_in(tmp_path, "print('unable to connect'); sys.exit(1)")
    with pytest.raises(wrk.WrkError, match="exited 1"):
        run_async(wrk.run("http://127.0.0.1:1", [("c1", "tok", [])], add_share=0,
                          connections=2, duration_s=1))
    _stand_in(tmp_path, "print('Running')")
    with pytest.raises(wrk.WrkError, match="no result"):
        run_async(wrk.run("http://127.0.0.1:1", [("c1", "tok", [])], add_share=0,
                          connections=2, duration_s=1))


def test_the_bench_takes_wrk_only_unpaced_and_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no wrk here
    with pytest.raises(SystemExit):
        parse_args(["--generator", "wrk"])
    assert "no wrk on the PATH" in capsys.readouterr().err
    _stand_in(tmp_path, "print('x')")
    with pytest.raises(SystemExit):
        parse_args(["--generator", "wrk", "--rate", "100"])
    assert "--rate paces the Python generator only" in capsys.readouterr().err
    plan, _ = parse_args(["--generator", "wrk"])
    assert plan.generator == "wrk"
    assert parse_args([])[0].generator == "python"
