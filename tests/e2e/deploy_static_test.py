#!/usr/bin/env python3
"""Static checks of the deployment files against the build and the server itself.

What is checked (each check prints ok/FAIL; any FAIL makes the test fail):
  - every YAML file under deploy/ parses;
  - the Dockerfile: multi-stage debian:bookworm -> debian:bookworm-slim; the build stage runs the
    README's build script (scripts/build.sh release) for exactly the programs the runtime stage
    copies out, nothing else (no tests, no benchmarks); every COPY source exists and is not
    excluded by .dockerignore (nor are the sources the build needs); COPY --from sources and
    the ENTRYPOINT / HEALTHCHECK programs are executables the build produces; numeric non-root
    USER; exec-form ENTRYPOINT of flightcache-server; EXPOSE covers the gRPC and metrics ports;
    the runtime packages cover every library `ldd` finds in the built binaries;
  - every FLIGHTCACHE_* name used in the Dockerfile, deploy/ and docs/OPERATIONS.md is a server
    setting (listed by `flightcache-server --help`);
  - every server configuration in the Dockerfile, Kubernetes manifests and compose file
    (environment + flags, layered the way the runtime layers them) is accepted by
    `flightcache-server --check-config` and listens on all interfaces;
  - Kubernetes: gRPC readiness and liveness probes on the listen port, resources requests and
    limits, terminationGracePeriodSeconds > the drain timeout, an application container that
    calls the sidecar on localhost, the origin Service exists, selectors match labels;
  - compose: stop_grace_period > the drain timeout, health checks name built programs, the
    origin and the load generator point at services that exist on the right ports;
  - hardening (issue 13): every Kubernetes container runs as a numeric non-root user (the
    Dockerfile's USER for flightcache's image) with a read-only root filesystem, no privilege
    escalation, every capability dropped and the RuntimeDefault seccomp profile, and
    flightcache-server's /tmp is a memory-backed emptyDir; every compose service is read_only
    with cap_drop ALL and no-new-privileges, and the flightcache image's services have a tmpfs
    /tmp;
  - flags given to the client programs (origin, loadgen, cli) are flags those programs have;
  - the commented, opt-in examples in the Kubernetes manifests and the compose file (TLS, the
    admin token) name real flags: a commented list item `# - --flag=...` is a server flag, a
    quoted "--flag..." in a comment (an exec probe) a flightcache-cli flag;
  - docs/OPERATIONS.md names every server flag, every metric a running server exposes and every
    log line the server's code writes.

Usage: deploy_static_test.py --repo=DIR --server=BIN [--cli=BIN --origin=BIN --loadgen=BIN]
"""

import argparse
import fnmatch
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

try:
    import yaml
except ImportError:  # pragma: no cover - reported as a failure below
    yaml = None

from check_report import check, fail, ok, summary  # noqa: E402  (beside this file)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- durations as absl::FormatDuration writes them ("10s", "1m30s", "500ms", "0") ------------
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def parse_duration(text):
    text = text.strip()
    if text in ("0", ""):
        return 0.0
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"bad duration {text!r}")
    return total


# ---- the Dockerfile -----------------------------------------------------------------------------
def parse_dockerfile(text):
    """[(instruction, arguments)] with continuations joined and comments dropped."""
    out = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        instr, _, args = current.partition(" ")
        out.append((instr.upper(), args.strip()))
        current = ""
    return out


def built_targets(runs):
    """The targets named after `scripts/build.sh release` in the first RUN that calls it ([] when
    it names none: everything is built), or None if no RUN calls it."""
    for run in runs:
        m = re.search(r"(^|[\s;&|])(\./)?scripts/build\.sh\s+release\b([^;&|]*)", run)
        if m:
            return shlex.split(m.group(3))
    return None


# Packages only the tests need: the image's build stage must not install them (minutes of
# download and install for every image build, for nothing it ships).
TEST_ONLY_PACKAGES = {"chromium", "prometheus", "redis-server", "clang-tidy", "clang-format"}


def check_build_stage_packages(repo, build_runs):
    """The build stage installs with `install-deps.sh build`, and that mode lists what building
    needs and none of the tests' packages."""
    installs = [m.group(3) for run in build_runs
                for m in [re.search(r"(^|[\s;&|])(\./)?scripts/install-deps\.sh\b([^;&|]*)", run)]
                if m]
    check(bool(installs) and all(shlex.split(a)[:1] == ["build"] for a in installs),
          f"the build stage runs scripts/install-deps.sh build ({installs})")
    script = os.path.join(repo, "scripts/install-deps.sh")
    listed = {}
    for mode in ("build", ""):
        out = subprocess.run([script, *([mode] if mode else []), "--list"], capture_output=True,
                             text=True, timeout=30)
        listed[mode] = set(out.stdout.split()) if out.returncode == 0 else set()
    check(listed["build"] and not (listed["build"] & TEST_ONLY_PACKAGES),
          f"install-deps.sh build lists none of {sorted(TEST_ONLY_PACKAGES)} "
          f"(lists {sorted(listed['build'] & TEST_ONLY_PACKAGES)})")
    check({"libgrpc++-dev", "libhiredis-dev", "cmake"} <= listed["build"] < listed[""]
          and TEST_ONLY_PACKAGES <= listed[""],
          "install-deps.sh build lists the build's libraries; the default mode lists them and the "
          "tests' packages too")


def stages(instructions):
    result = []
    for instr, args in instructions:
        if instr == "FROM":
            result.append({"from": args, "instrs": []})
        elif result:
            result[-1]["instrs"].append((instr, args))
    return result


def parse_env_instruction(args):
    env = {}
    for token in shlex.split(args):
        if "=" in token:
            k, v = token.split("=", 1)
            env[k] = v
    return env


def copy_sources(args):
    """(from_stage, [sources], dest) of a COPY/ADD instruction."""
    tokens = shlex.split(args) if not args.startswith("[") else json.loads(args)
    from_stage = None
    rest = []
    for t in tokens:
        if t.startswith("--from="):
            from_stage = t.split("=", 1)[1]
        elif t.startswith("--"):
            continue
        else:
            rest.append(t)
    return from_stage, rest[:-1], rest[-1]


def dockerignore_patterns(repo):
    path = os.path.join(repo, ".dockerignore")
    if not os.path.exists(path):
        return []
    pats = []
    for line in read(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line)
    return pats


def _pattern_regex(pattern):
    """A .dockerignore pattern (Go filepath.Match plus **) as a regex over relative paths."""
    neg = pattern.startswith("!")
    p = (pattern[1:] if neg else pattern).strip("/")
    rx = ""
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            rx += "(?:.*/)?"
            i += 3
        elif p.startswith("**", i):
            rx += ".*"
            i += 2
        elif p[i] == "*":
            rx += "[^/]*"
            i += 1
        elif p[i] == "?":
            rx += "[^/]"
            i += 1
        elif p[i] == "[" and "]" in p[i + 1:]:
            j = p.index("]", i + 1)
            rx += "[" + p[i + 1:j].replace("\\", "\\\\") + "]"
            i = j + 1
        else:
            rx += re.escape(p[i])
            i += 1
    # A pattern matching a directory excludes everything under it.
    return neg, re.compile(rf"^{rx}(?:/.*)?$")


def dockerignored(rel, patterns):
    excluded = False
    for pattern in patterns:
        neg, rx = _pattern_regex(pattern)
        if rx.match(rel):
            excluded = not neg
    return excluded


def cmake_executables(repo):
    names = set()
    for root, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in ("build", ".git", ".cache")]
        for f in files:
            if f == "CMakeLists.txt" or f.endswith(".cmake"):
                for m in re.finditer(r"add_executable\(\s*([A-Za-z0-9_.+-]+)", read(os.path.join(root, f))):
                    names.add(m.group(1))
    return names


# ---- the server ---------------------------------------------------------------------------------
class Server:
    def __init__(self, binary):
        self.binary = binary
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
        self.help = out.stdout
        self.flags = set(re.findall(r"^  --([a-z0-9-]+)\s*$", self.help, re.M))
        self.env_names = set(re.findall(r"env (FLIGHTCACHE_[A-Z0-9_]+)", self.help))

    def check_config(self, env, args):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCACHE_")}
        clean.update(env)
        return subprocess.run([self.binary, "--check-config", *args], capture_output=True,
                              text=True, env=clean, timeout=30)


def described(output):
    """The key=value pairs of `--check-config`'s 'configuration OK: ...' line."""
    line = output.split("configuration OK:", 1)[-1]
    return dict(re.findall(r"([a-z-]+)=(\S+)", line))


def check_server_config(server, source, env, args, in_container=True):
    """Runs --check-config on one configuration; returns its effective settings or None."""
    result = server.check_config(env, args)
    shown = " ".join([*(f"{k}={v}" for k, v in sorted(env.items())), *args]) or "(defaults)"
    if not check(result.returncode == 0 and "configuration OK" in result.stdout,
                 f"{source}: --check-config accepts {shown}"
                 + ("" if result.returncode == 0 else f" -- exit {result.returncode}: "
                    f"{(result.stderr or result.stdout).strip()}")):
        return None
    settings = described(result.stdout)
    if in_container:
        for key in ("listen", "metrics-listen"):
            value = settings.get(key, "")
            check(value.startswith(("0.0.0.0:", "[::]:")) or value == "(disabled)",
                  f"{source}: {key}={value} is reachable from outside the container")
    return settings


def port_of(address):
    return int(address.rsplit(":", 1)[1])


# ---- YAML documents -------------------------------------------------------------------------------
def load_yaml_files(repo):
    docs = {}
    for root, _, files in os.walk(os.path.join(repo, "deploy")):
        for f in sorted(files):
            if f.endswith((".yaml", ".yml")):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, repo)
                try:
                    loaded = [d for d in yaml.safe_load_all(read(path)) if d is not None]
                    check(bool(loaded), f"{rel} parses ({len(loaded)} document(s))")
                    docs[rel] = loaded
                except yaml.YAMLError as e:
                    fail(f"{rel} does not parse: {e}")
    return docs


def is_flightcache_image(image):
    name = (image or "").rsplit("/", 1)[-1]
    return name.split(":")[0].split("@")[0] == "flightcache"


def program_flags(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"^\s*--([a-z0-9-]+)", out.stdout + out.stderr, re.M))


def check_k8s_hardening(where, pod, c, image_uid):
    """Issue 13: the container's effective securityContext (the pod's, overridden by its own)."""
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    uid = sc.get("runAsUser")
    check(sc.get("runAsNonRoot") is True and isinstance(uid, int) and uid != 0,
          f"{where}: runAsNonRoot with a numeric non-root runAsUser ({uid})")
    if is_flightcache_image(c.get("image")) and image_uid.isdigit():
        check(uid == int(image_uid), f"{where}: runAsUser {uid} is the image's USER {image_uid}")
    check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation: false")
    check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem: true")
    check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
          f"{where}: capabilities: drop: [ALL]")
    check((sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
          f"{where}: seccompProfile RuntimeDefault")


def check_k8s_memory_tmp(where, pod, c):
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    tmp = [m for m in c.get("volumeMounts", []) if m.get("mountPath") == "/tmp"]
    empty_dir = (volumes.get(tmp[0].get("name"), {}).get("emptyDir") or {}) if tmp else {}
    check(empty_dir.get("medium") == "Memory", f"{where}: /tmp is an emptyDir with medium: Memory")


def check_compose_hardening(where, s, flightcache_image):
    check(s.get("read_only") is True, f"{where}: read_only: true")
    check("ALL" in (s.get("cap_drop") or []), f"{where}: cap_drop: [ALL]")
    check("no-new-privileges:true" in (s.get("security_opt") or []),
          f"{where}: security_opt: no-new-privileges:true")
    if flightcache_image:
        tmpfs = s.get("tmpfs") or []
        tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
        check(any(t.split(":", 1)[0] == "/tmp" for t in tmpfs), f"{where}: a tmpfs on /tmp")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--cli")
    ap.add_argument("--origin")
    ap.add_argument("--loadgen")
    opts = ap.parse_args()
    repo = os.path.abspath(opts.repo)

    if yaml is None:
        fail(f"python3 ({sys.executable}) has no yaml module: install python3-yaml "
             "(scripts/install-deps.sh lists it)")
        return 1

    server = Server(opts.server)
    check(len(server.flags) >= 15 and len(server.env_names) >= 15,
          f"flightcache-server --help lists its flags ({len(server.flags)}) and env names "
          f"({len(server.env_names)})")
    programs = {"flightcache-server": opts.server, "flightcache-cli": opts.cli,
                "flightcache-origin": opts.origin, "flightcache-loadgen": opts.loadgen}
    flags_of = {name: program_flags(path) for name, path in programs.items()
                if path and name != "flightcache-server"}
    built = cmake_executables(repo)
    check({"flightcache-server", "flightcache-cli"} <= built,
          f"the build produces flightcache-server and flightcache-cli ({sorted(built)})")

    # The checks can fail: a setting the server rejects must be reported as rejected.
    bad = server.check_config({"FLIGHTCACHE_TTL": "soon"}, [])
    check(bad.returncode == 2 and "FLIGHTCACHE_TTL" in bad.stderr,
          "self-test: --check-config rejects FLIGHTCACHE_TTL=soon with exit 2")

    # ---- YAML ----------------------------------------------------------------------------------
    docs = load_yaml_files(repo)
    check(any(p.startswith("deploy/kubernetes/") for p in docs), "deploy/kubernetes has manifests")
    check("deploy/compose.yaml" in docs, "deploy/compose.yaml exists and parses")

    # ---- Dockerfile ----------------------------------------------------------------------------
    dockerfile = os.path.join(repo, "Dockerfile")
    instrs = parse_dockerfile(read(dockerfile))
    st = stages(instrs)
    check(len(st) >= 2, f"Dockerfile is multi-stage ({len(st)} stages)")
    check(st[0]["from"].split()[0] == "debian:bookworm", f"build stage FROM {st[0]['from']}")
    check(st[-1]["from"].split()[0] == "debian:bookworm-slim", f"runtime stage FROM {st[-1]['from']}")
    readme = read(os.path.join(repo, "README.md"))
    check("scripts/build.sh" in readme, "the README's build script is scripts/build.sh")
    build_runs = [a for i, a in st[0]["instrs"] if i == "RUN"]
    build_targets = built_targets(build_runs)
    check(build_targets is not None, "the build stage runs scripts/build.sh release")
    check(os.access(os.path.join(repo, "scripts/build.sh"), os.X_OK), "scripts/build.sh is executable")
    check_build_stage_packages(repo, build_runs)

    patterns = dockerignore_patterns(repo)
    copied_bins = set()
    for stage in st:
        for instr, args in stage["instrs"]:
            if instr not in ("COPY", "ADD"):
                continue
            from_stage, sources, dest = copy_sources(args)
            for src in sources:
                if from_stage is None:
                    rel = os.path.normpath(src).lstrip("./") or "."
                    check(os.path.exists(os.path.join(repo, src)), f"COPY source {src} exists")
                    if rel != ".":
                        check(not dockerignored(rel, patterns), f"COPY source {src} is not .dockerignored")
                else:
                    name = os.path.basename(src)
                    check(name in built, f"COPY --from={from_stage} {src}: {name} is built by CMake")
                    if stage is st[-1]:
                        copied_bins.add(name)
    # Building every target the preset configures compiles the tests and benchmarks too, which
    # the image never ships: the build stage names exactly the programs it copies out.
    check(bool(build_targets) and set(build_targets) == copied_bins,
          f"the build stage builds only the shipped programs ({sorted(build_targets or [])} "
          f"== {sorted(copied_bins)})")
    needed = ["CMakeLists.txt", "CMakePresets.json", "scripts/build.sh", "scripts/install-deps.sh"]
    for top in ("cmake", "lib", "proto", "server", "client", "tests"):
        for root, _, files in os.walk(os.path.join(repo, top)):
            for f in files:
                if f == "CMakeLists.txt" or f.endswith((".cc", ".h", ".cmake", ".proto")):
                    needed.append(os.path.relpath(os.path.join(root, f), repo))
    ignored = [n for n in needed if dockerignored(n, patterns)]
    check(not ignored, f".dockerignore keeps the {len(needed)} files the build needs"
          + (f" (excludes {ignored[:5]})" if ignored else ""))

    runtime = st[-1]["instrs"]
    image_env = {}
    for instr, args in runtime:
        if instr == "ENV":
            image_env.update(parse_env_instruction(args))
    users = [a for i, a in runtime if i == "USER"]
    user = users[-1] if users else "0"
    uid = user.split(":")[0]
    check(uid.isdigit() and uid != "0", f"runtime USER {user} is a numeric non-root user")
    entrypoints = [a for i, a in runtime if i == "ENTRYPOINT"]
    entrypoint = []
    if check(bool(entrypoints) and entrypoints[-1].startswith("["), "ENTRYPOINT is exec form"):
        entrypoint = json.loads(entrypoints[-1])
    image_program = os.path.basename(entrypoint[0]) if entrypoint else ""
    check(image_program == "flightcache-server" and image_program in copied_bins,
          f"ENTRYPOINT runs flightcache-server, copied into the image ({entrypoint})")
    cmds = [a for i, a in runtime if i == "CMD"]
    image_args = json.loads(cmds[-1]) if cmds and cmds[-1].startswith("[") else []
    image_settings = check_server_config(server, "Dockerfile", 
                                         {k: v for k, v in image_env.items()
                                          if k.startswith("FLIGHTCACHE_")},
                                         [*entrypoint[1:], *image_args]) or {}
    exposed = set()
    for instr, args in runtime:
        if instr == "EXPOSE":
            exposed.update(int(p.split("/")[0]) for p in args.split())
    for key in ("listen", "metrics-listen"):
        if image_settings.get(key, "(disabled)") != "(disabled)":
            port = port_of(image_settings[key])
            check(port in exposed, f"EXPOSE {sorted(exposed)} includes the {key} port {port}")
    healthchecks = [a for i, a in runtime if i == "HEALTHCHECK"]
    if check(bool(healthchecks), "the image has a HEALTHCHECK"):
        hc = healthchecks[-1]
        cmd = hc.split(" CMD ", 1)[1] if " CMD " in hc else hc.partition("CMD ")[2]
        words = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
        program = os.path.basename(words[0]) if words else ""
        check(program in built and program in copied_bins,
              f"HEALTHCHECK runs {program}, built and copied into the image")
        check("health" in words, "HEALTHCHECK asks for health")
        listen_port = port_of(image_settings["listen"]) if "listen" in image_settings else None
        check("${FLIGHTCACHE_LISTEN##*:}" in cmd or f":{listen_port}" in cmd,
              "HEALTHCHECK targets the listen port")
    check(any(i == "STOPSIGNAL" and a in ("SIGTERM", "15") for i, a in runtime)
          or not any(i == "STOPSIGNAL" for i, _ in runtime),
          "the stop signal is SIGTERM (what the server drains on)")

    # Runtime libraries: every library ldd resolves for the built binaries comes from a package
    # the runtime stage installs (or one every bookworm image has).
    apt_runs = " ".join(a for i, a in runtime if i == "RUN" and "apt-get install" in a)
    listed = set(re.findall(r"\b(lib[a-z0-9.+-]+|zlib1g)\b", apt_runs))
    base = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
    if subprocess.run(["sh", "-c", "command -v dpkg-query && command -v ldd"],
                      capture_output=True).returncode == 0:
        libs = {}  # real path of each library -> the programs that link it
        for name, path in programs.items():
            if not path:
                continue
            ldd = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30).stdout
            for lib in re.findall(r"=> (/\S+)", ldd):
                libs.setdefault(os.path.realpath(lib), set()).add(name)
        # One dpkg-query for all (it is slow per call); with merged /usr a file is registered
        # under /lib or /usr/lib, so ask for both spellings.
        spellings = set()
        for lib in libs:
            spellings.update({lib, re.sub(r"^/usr/lib/", "/lib/", lib), re.sub(r"^/lib/", "/usr/lib/", lib)})
        q = subprocess.run(["dpkg-query", "-S", *sorted(spellings)], capture_output=True, text=True,
                           timeout=120)
        owner_of = {}
        for line in q.stdout.splitlines():
            pkgs, _, path = line.partition(": ")
            owner_of[os.path.basename(path.strip())] = pkgs.split(",")[0].split(":")[0].strip()
        missing = {}
        for lib, users in libs.items():
            owner = owner_of.get(os.path.basename(lib))
            if owner and owner not in listed | base:
                missing.setdefault(owner, set()).update(users)
        check(not missing, "the runtime stage installs the package of every library ldd finds"
              + (f" (missing: {sorted(missing)})" if missing else ""))
    else:
        print("skip: no dpkg-query/ldd to map libraries to packages")

    # ---- FLIGHTCACHE_* names -------------------------------------------------------------------
    scanned = ["Dockerfile", "docs/OPERATIONS.md"]
    for root, _, files in os.walk(os.path.join(repo, "deploy")):
        scanned += [os.path.relpath(os.path.join(root, f), repo) for f in files]
    for rel in scanned:
        path = os.path.join(repo, rel)
        if not os.path.exists(path):
            continue
        # -DFLIGHTCACHE_... are CMake options, not server settings.
        names = set(re.findall(r"(?<!-D)\b(FLIGHTCACHE_[A-Z][A-Z0-9_]*)", read(path)))
        unknown = sorted(names - server.env_names)
        check(not unknown, f"{rel}: every FLIGHTCACHE_* name ({len(names)}) is a server setting"
              + (f" (unknown: {unknown})" if unknown else ""))

    def check_program_args(source, program, args):
        if program not in built:
            fail(f"{source}: runs {program}, which the build does not produce")
            return
        ok(f"{source}: runs {program}, which the build produces")
        if program == "flightcache-server" or program not in flags_of:
            return
        used = {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}
        unknown = sorted(used - flags_of[program])
        check(not unknown, f"{source}: {program} has every flag given ({sorted(used)})"
              + (f"; unknown: {unknown}" if unknown else ""))

    # ---- Kubernetes ----------------------------------------------------------------------------
    services = {}
    for rel, loaded in docs.items():
        if rel.startswith("deploy/kubernetes/"):
            for d in loaded:
                if d.get("kind") == "Service":
                    services[d["metadata"]["name"]] = {p.get("port") for p in d["spec"].get("ports", [])}
    sidecars = 0
    for rel, loaded in docs.items():
        if not rel.startswith("deploy/kubernetes/"):
            continue
        for d in loaded:
            check(isinstance(d, dict) and "apiVersion" in d and "kind" in d,
                  f"{rel}: document has apiVersion and kind ({d.get('kind')})")
            if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet"):
                spec = d["spec"]
                sel = spec.get("selector", {}).get("matchLabels", {})
                labels = spec["template"]["metadata"].get("labels", {})
                check(sel and all(labels.get(k) == v for k, v in sel.items()),
                      f"{rel}: {d['kind']} {d['metadata']['name']}: selector matches the template labels")
                pod = spec["template"]["spec"]
            elif d.get("kind") == "Pod":
                pod = d["spec"]
            else:
                continue
            name = d["metadata"]["name"]
            grace = pod.get("terminationGracePeriodSeconds", 30)
            all_containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
            for c in all_containers:
                where = f"{rel}: {name}/{c['name']}"
                check_k8s_hardening(where, pod, c, uid)
                for kind in ("requests", "limits"):
                    res = c.get("resources", {}).get(kind, {})
                    check("cpu" in res and "memory" in res, f"{where}: resources.{kind} has cpu and memory")
                for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                    command = c.get(probe_name, {}).get("exec", {}).get("command")
                    if command:
                        check_program_args(f"{where} {probe_name}", os.path.basename(command[0]),
                                           command[1:])
                if not is_flightcache_image(c.get("image")):
                    continue
                command = c.get("command") or entrypoint
                program = os.path.basename(command[0]) if command else ""
                args = [*command[1:], *(c.get("args") or ([] if c.get("command") else image_args))]
                check_program_args(where, program, args)
                if program != "flightcache-server":
                    continue
                sidecars += 1
                check_k8s_memory_tmp(where, pod, c)
                env = {k: v for k, v in image_env.items() if k.startswith("FLIGHTCACHE_")}
                for e in c.get("env", []):
                    if "value" in e:
                        env[e["name"]] = str(e["value"])
                    else:
                        fail(f"{where}: {e['name']} has no literal value to check")
                settings = check_server_config(server, where, env, args)
                if not settings:
                    continue
                listen_port = port_of(settings["listen"])
                ports = {p["containerPort"] for p in c.get("ports", [])}
                check(listen_port in ports, f"{where}: containerPort {sorted(ports)} includes {listen_port}")
                if settings.get("metrics-listen", "(disabled)") != "(disabled)":
                    check(port_of(settings["metrics-listen"]) in ports,
                          f"{where}: containerPort includes the metrics port")
                for probe_name in ("readinessProbe", "livenessProbe"):
                    probe = c.get(probe_name, {})
                    check(probe.get("grpc", {}).get("port") == listen_port,
                          f"{where}: {probe_name} is a gRPC probe on port {listen_port}")
                drain = parse_duration(settings["drain-timeout"])
                check(grace > drain, f"{where}: terminationGracePeriodSeconds {grace} > drain "
                      f"timeout {settings['drain-timeout']}")
                live = c.get("livenessProbe", {})
                live_window = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
                check(live_window > drain, f"{where}: liveness gives up only after {live_window}s, "
                      "longer than a drain")
                sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
                check(sc.get("runAsNonRoot") is True or sc.get("runAsUser", 0) != 0,
                      f"{where}: runs as non-root")
                m = re.match(r"grpc://([^:/]+):(\d+)$", settings["origin"])
                if m and not re.match(r"^(\d+\.){3}\d+$|^localhost$", m.group(1)):
                    svc = m.group(1).split(".")[0]
                    check(int(m.group(2)) in services.get(svc, set()),
                          f"{where}: origin {settings['origin']} is a Service in deploy/kubernetes")
                # The application beside it calls it on localhost.
                local = {f"127.0.0.1:{listen_port}", f"localhost:{listen_port}"}
                callers = [o["name"] for o in all_containers if o is not c and any(
                    str(e.get("value", "")) in local for e in o.get("env", []))]
                check(bool(callers), f"{where}: an application container calls it on localhost "
                      f"({callers})")
    check(sidecars >= 1, f"deploy/kubernetes runs flightcache-server as a sidecar ({sidecars})")

    # ---- commented examples --------------------------------------------------------------------
    for rel in sorted(docs):
        if not (rel.startswith("deploy/kubernetes/") or rel == "deploy/compose.yaml"):
            continue
        comments = [line.split("#", 1)[1] for line in read(os.path.join(repo, rel)).splitlines()
                    if line.lstrip().startswith("#")]
        server_args = {m.group(1) for c in comments
                       for m in re.finditer(r"^\s*- --([a-z0-9-]+)", c)}
        cli_args = {m.group(1) for c in comments for m in re.finditer(r'"--([a-z0-9-]+)', c)}
        if server_args:
            unknown = sorted(server_args - server.flags)
            check(not unknown, f"{rel}: the commented server args {sorted(server_args)} are "
                  "flightcache-server flags" + (f" (unknown: {unknown})" if unknown else ""))
        if cli_args and "flightcache-cli" in flags_of:
            unknown = sorted(cli_args - flags_of["flightcache-cli"])
            check(not unknown, f"{rel}: the commented probe's {sorted(cli_args)} are "
                  "flightcache-cli flags" + (f" (unknown: {unknown})" if unknown else ""))

    # ---- compose -------------------------------------------------------------------------------
    compose = (docs.get("deploy/compose.yaml") or [{}])[0]
    svcs = compose.get("services", {})
    listening = {}  # service -> ports it listens on
    server_services = []
    for sname, s in svcs.items():
        where = f"deploy/compose.yaml: {sname}"
        uses_image = is_flightcache_image(s.get("image")) or "build" in s
        check_compose_hardening(where, s, uses_image)
        if not uses_image:
            continue
        build = s.get("build")
        if build:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            dfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            check(os.path.exists(os.path.join(repo, "deploy", ctx, dfile)),
                  f"{where}: builds {os.path.normpath(os.path.join('deploy', ctx, dfile))}")
        ep = s.get("entrypoint")
        ep = shlex.split(ep) if isinstance(ep, str) else (ep or entrypoint)
        cmd = s.get("command")
        cmd = shlex.split(cmd) if isinstance(cmd, str) else (cmd if cmd is not None else
                                                             ([] if s.get("entrypoint") else image_args))
        program = os.path.basename(ep[0]) if ep else ""
        args = [*ep[1:], *cmd]
        check_program_args(where, program, args)
        hc = s.get("healthcheck", {}).get("test")
        if hc:
            words = hc[1:] if hc[0] in ("CMD", "CMD-SHELL") else hc
            if hc[0] == "CMD-SHELL":
                words = shlex.split(words[0])
            check_program_args(f"{where} healthcheck", os.path.basename(words[0]), words[1:])
        if program == "flightcache-server":
            env = {k: v for k, v in image_env.items() if k.startswith("FLIGHTCACHE_")}
            senv = s.get("environment", {})
            if isinstance(senv, list):
                senv = dict(e.split("=", 1) for e in senv)
            env.update({k: str(v) for k, v in senv.items()})
            settings = check_server_config(server, where, env, args)
            if settings:
                server_services.append((sname, s, settings))
                listening[sname] = {port_of(settings["listen"])}
                drain = parse_duration(settings["drain-timeout"])
                grace = parse_duration(str(s.get("stop_grace_period", "10s")))
                check(grace > drain, f"{where}: stop_grace_period {grace:g}s > drain timeout "
                      f"{settings['drain-timeout']}")
                published = {str(p).rsplit(":", 1)[-1] for p in s.get("ports", [])}
                check(str(port_of(settings["listen"])) in published,
                      f"{where}: publishes the gRPC port")
        else:
            listening[sname] = {port_of(a.split("=", 1)[1]) for a in args if a.startswith("--listen=")}
        for dep in (s.get("depends_on") or {}):
            check(dep in svcs, f"{where}: depends_on {dep} exists")
    check(bool(server_services), "deploy/compose.yaml runs flightcache-server")
    for sname, s, settings in server_services:
        m = re.match(r"grpc://([^:/]+):(\d+)$", settings["origin"])
        if m:
            check(int(m.group(2)) in listening.get(m.group(1), set()),
                  f"deploy/compose.yaml: {sname}'s origin {settings['origin']} is a service listening there")
    targets = []
    for sname, s in svcs.items():
        cmd = s.get("command") or []
        for a in (shlex.split(cmd) if isinstance(cmd, str) else cmd):
            if a.startswith("--target="):
                host, port = a.split("=", 1)[1].rsplit(":", 1)
                targets.append(sname)
                check(int(port) in listening.get(host, set()),
                      f"deploy/compose.yaml: {sname} --target={host}:{port} is a flightcache server")
    check(bool(targets), f"deploy/compose.yaml runs a load generator against the server ({targets})")

    # ---- docs/OPERATIONS.md --------------------------------------------------------------------
    ops_path = os.path.join(repo, "docs/OPERATIONS.md")
    if check(os.path.exists(ops_path), "docs/OPERATIONS.md exists"):
        ops = read(ops_path)
        undocumented = sorted(f for f in server.flags if f"--{f}" not in ops)
        check(not undocumented, "OPERATIONS.md documents every server flag"
              + (f" (missing {undocumented})" if undocumented else ""))
        undocumented = sorted(e for e in server.env_names if e not in ops)
        check(not undocumented, "OPERATIONS.md names every FLIGHTCACHE_* variable"
              + (f" (missing {undocumented})" if undocumented else ""))
        lines = []
        for f in sorted(os.listdir(os.path.join(repo, "server"))):
            if f.endswith(".cc"):
                src = read(os.path.join(repo, "server", f))
                for m in re.finditer(r'spdlog::(?:trace|debug|info|warn|error|critical)\(\s*"([^"]*)"', src):
                    prefix = m.group(1).split("{", 1)[0].strip()
                    if len(prefix) >= 8:
                        lines.append((f, prefix))
        undocumented = [p for f, p in lines if p not in ops]
        check(not undocumented and len(lines) >= 5,
              f"OPERATIONS.md quotes every server log line ({len(lines)})"
              + (f" (missing {undocumented})" if undocumented else ""))
        metrics = scrape_metric_names(opts.server, opts.cli)
        if metrics is not None:
            undocumented = sorted(m for m in metrics if m not in ops)
            check(not undocumented and len(metrics) >= 10,
                  f"OPERATIONS.md documents every metric /metrics serves ({len(metrics)})"
                  + (f" (missing {undocumented})" if undocumented else ""))

    return summary("all deployment checks passed")


def scrape_metric_names(server_bin, cli_bin):
    """Starts the server on free ports, makes one Get (so per-call series exist), scrapes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCACHE_")}
    proc = subprocess.Popen(
        [server_bin, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
         "--origin=sim://?latency_ms=1&jitter_ms=0", "--drain-timeout=1s"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        m = re.search(r"\(port (\d+)\), metrics on \S+ \(port (\d+)\)", line)
        if not check(m is not None, "the server starts for a /metrics scrape"):
            return None
        port, metrics_port = m.group(1), m.group(2)
        if cli_bin:
            r = subprocess.run([cli_bin, f"--target=127.0.0.1:{port}", "get", "k"],
                               capture_output=True, text=True, timeout=30)
            check(r.returncode == 0, "a Get for the scrape succeeds")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        check(proc.returncode == 0, f"the scraped server exits 0 on SIGTERM ({proc.returncode})")


if __name__ == "__main__":
    sys.exit(main())
