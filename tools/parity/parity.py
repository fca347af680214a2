#!/usr/bin/env python3
"""Build each fixture with BuildKit (dockerd's, through `DOCKER_BUILDKIT=1 docker build`) and with
rbuild, and compare what a user gets: the image config and every layer's files.

Differences that are rbuild's documented choices are not reported: timestamps (rbuild clamps to
SOURCE_DATE_EPOCH, default 0), tar user/group names (rbuild writes numeric ids only) and file-type
bits in tar modes. Everything else is a parity bug.

Usage (as root, on a machine with Debian's docker.io):
    tools/parity/parity.py [--rbuild PATH] [--keep DIR] [FIXTURE ...]
It starts its own dockerd on a private socket with --bridge=none and stops it at the end.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# `broken` is meant to fail; `multistage` runs `adduser`, which the busybox test image does not link.
SKIP = {"broken", "multistage"}
# Debian's docker.io client (20.10) drives dockerd's built-in BuildKit without buildx.
DOCKER = os.environ.get("PARITY_DOCKER", "/usr/bin/docker")
# The base image names fixtures use; all are the busybox test image.
BASES = ["busybox:test", "busybox:1.36"]
# Directories BuildKit v0.8 leaves in RUN layers as mount points; newer BuildKit and rbuild don't.
RUN_MOUNT_DIRS = {"dev", "proc", "sys", "etc", "etc/hosts", "etc/resolv.conf", "etc/hostname"}


def run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return done


def cargo(*args):
    subprocess.run(["cargo", *args], check=True, cwd=REPO)


class Dockerd:
    def __init__(self, root: Path):
        self.root = root
        self.sock = f"unix://{root}/docker.sock"
        self.proc = subprocess.Popen(
            ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false",
             "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "pid"), "-H", self.sock],
            stdout=open(root / "dockerd.log", "w"), stderr=subprocess.STDOUT)
        for _ in range(60):
            if subprocess.run(self.cmd("version"), capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        raise SystemExit(f"dockerd did not start; see {root}/dockerd.log")

    def cmd(self, *args):
        return [DOCKER, "-H", self.sock, *args]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def offline(dockerfile: str, work: Path) -> str:
    """The Dockerfile without a `# syntax=` line, which would make dockerd pull a frontend."""
    text = Path(dockerfile).read_text()
    lines = text.splitlines(keepends=True)
    if not lines or not lines[0].lower().replace(" ", "").startswith("#syntax="):
        return dockerfile
    copy = work / (Path(dockerfile).parent.name + ".Dockerfile")
    copy.write_text("".join(lines[1:]))
    return str(copy)


def docker_archive_image(tar: Path, out: Path):
    """(config, [layer entries]) of the only image in a docker-archive tar."""
    out.mkdir(parents=True)
    with tarfile.open(tar) as t:
        t.extractall(out, filter="fully_trusted")
    manifest = json.loads((out / "manifest.json").read_text())[0]
    config = json.loads((out / manifest["Config"]).read_text())
    layers = [layer_entries(out / l) for l in manifest["Layers"]]
    return config, layers


def layer_entries(path: Path):
    entries = {}
    with tarfile.open(path) as t:
        for m in t.getmembers():
            data = t.extractfile(m).read() if m.isfile() else b""
            xattrs = {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            entries[m.name.rstrip("/")] = {
                "mode": oct(m.mode & 0o7777), "uid": m.uid, "gid": m.gid,
                "type": m.type.decode(), "link": m.linkname, "size": len(data),
                "sha": __import__("hashlib").sha256(data).hexdigest()[:16], "xattrs": xattrs,
            }
    return entries


def normalize_config(c):
    c = json.loads(json.dumps(c))
    c.pop("created", None)
    for h in c.get("history", []):
        h.pop("created", None)
    cfg = c.get("config", {})
    # Docker's legacy fields, null/empty when unset; the OCI config has no such keys.
    for k in ("OnBuild", "Labels", "Volumes", "ExposedPorts"):
        if cfg.get(k) in (None, {}, []):
            cfg.pop(k, None)
    c.get("rootfs", {}).pop("diff_ids", None)  # differ with mtimes; contents are compared below
    return c


def diff_config(bk, rb):
    a, b = normalize_config(bk), normalize_config(rb)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if k == "config":
                for f in sorted(set(a[k]) | set(b.get(k, {}))):
                    if a[k].get(f) != b.get(k, {}).get(f):
                        out.append(f"config.{f}: buildkit {a[k].get(f)!r} rbuild {b[k].get(f)!r}")
            else:
                out.append(f"{k}: buildkit {json.dumps(a.get(k))} rbuild {json.dumps(b.get(k))}")
    return out


def diff_layers(bk, rb, run_layers):
    out = []
    if len(bk) != len(rb):
        out.append(f"layer count: buildkit {len(bk)} rbuild {len(rb)}")
    for i, (a, b) in enumerate(zip(bk, rb)):
        if i in run_layers:
            for d in RUN_MOUNT_DIRS:
                if d in a and d not in b and a[d]["type"] == "5":
                    a = {k: v for k, v in a.items() if k != d}
        for path in sorted(set(a) | set(b)):
            if a.get(path) != b.get(path):
                out.append(f"layer {i} {path}: buildkit {a.get(path)} rbuild {b.get(path)}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rbuild", help="the rbuild binary (default: build it with cargo)")
    ap.add_argument("--keep", help="keep the work directory here")
    ap.add_argument("fixtures", nargs="*")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="rbuild-parity-"))
    work.mkdir(parents=True, exist_ok=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
    rbuild = args.rbuild
    if not rbuild:
        cargo("build", "--release", "-p", "rbuild-cli")
        rbuild = str(target / "rbuild")
    cargo("build", "--release", "-p", "rbuild-test-support", "--examples")
    examples = target / "examples"
    run([str(examples / "busybox_docker_archive"), str(work / "busybox.tar")])
    run([str(examples / "busybox_layout"), str(work / "busybox-layout")])

    dockerd = Dockerd(work)
    failures = 0
    try:
        run(dockerd.cmd("load", "-i", str(work / "busybox.tar")))
        for name in BASES[1:]:
            run(dockerd.cmd("tag", BASES[0], name))
        contexts = []
        for base in BASES:
            contexts += ["--build-context", f"{base}=oci-layout://{work}/busybox-layout:test"]
        names = args.fixtures or sorted(
            p.name for p in (REPO / "fixtures").iterdir()
            if (p / "Dockerfile").exists() and p.name not in SKIP)
        for name in names:
            fixture = REPO / "fixtures" / name
            # Some fixtures keep their context apart from the Dockerfile.
            ctx = fixture / "context" if (fixture / "context").is_dir() else fixture
            dockerfile = str(fixture / "Dockerfile")
            tag = f"parity-{name}:1"
            env = dict(os.environ, DOCKER_BUILDKIT="1")
            run(dockerd.cmd("build", "--network=none", "-f", offline(dockerfile, work), "-t", tag,
                            str(ctx)), env=env)
            run(dockerd.cmd("save", "-o", str(work / f"{name}-bk.tar"), tag))
            run([rbuild, "--root", str(work / "store"), "build", "--progress", "quiet",
                 "--network", "none", "-f", dockerfile, *contexts,
                 "-o", f"type=docker,dest={work}/{name}-rb.tar", str(ctx)])
            bk_cfg, bk_layers = docker_archive_image(work / f"{name}-bk.tar", work / f"{name}-bk")
            rb_cfg, rb_layers = docker_archive_image(work / f"{name}-rb.tar", work / f"{name}-rb")
            history = [h for h in bk_cfg.get("history", []) if not h.get("empty_layer")]
            run_layers = {i for i, h in enumerate(history) if h.get("created_by", "").startswith("RUN")}
            problems = diff_config(bk_cfg, rb_cfg) + diff_layers(bk_layers, rb_layers, run_layers)
            print(f"{name}: {'same config and files' if not problems else f'{len(problems)} difference(s)'}")
            for p in problems:
                print(f"  {p}")
            failures += bool(problems)
    finally:
        dockerd.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
