"""Operator commands: --version and wsgate_build_info, `wsgate token` (mint
and --check) against a real gateway, `--config FILE` and its precedence,
`wsgate config --check`, --help's defaults, the README's flag and error-code
lists, and the web root of an installed binary."""

import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from wsgate_testing import REPO, WSGATE_BIN, WsClient, async_test, run_wsgate, scrape_metrics

SECRET = "cmd-test-secret-0123456789abcdef-012345"


@pytest.fixture
def secret_file(tmp_path):
    f = tmp_path / "jwt.secret"
    f.write_text(SECRET + "\n")
    return f


def one_error_line(r, name):
    err = r.stderr.decode(errors="replace")
    lines = [l for l in err.splitlines() if l.strip()]
    assert r.returncode == 2, (r.returncode, err, r.stdout)
    assert len(lines) == 1 and name in lines[0], lines
    return lines[0]


# ---- version ---------------------------------------------------------------

def test_version_and_build_info(procs):
    r = run_wsgate(["--version"])
    assert r.returncode == 0, r
    m = re.fullmatch(r"wsgate (\d+\.\d+\.\d+)\n", r.stdout.decode())
    assert m, r.stdout
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert f"VERSION {m.group(1)} " in cmake, "--version is not the project version"
    gw = procs.gateway(node_id="v")
    metrics = scrape_metrics(gw.port)
    assert metrics.value("wsgate_build_info", version=m.group(1)) == 1
    assert metrics.type_of("wsgate_build_info") == "gauge"


# ---- token -------------------------------------------------------------------

def mint(secret_file, *args):
    r = run_wsgate(["token", "--secret-file", str(secret_file), *args])
    assert r.returncode == 0, r
    tok = r.stdout.decode().strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]{43}", tok), tok
    return tok


@async_test(30)
async def test_minted_token_is_what_the_gateway_accepts(procs, secret_file):
    tok = mint(secret_file, "--sub", "ana", "--channels", "room.*", "--publish", "room.1",
               "--ttl", "1h")
    claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
    assert claims["sub"] == "ana" and claims["channels"] == ["room.*"], claims
    assert claims["publish"] == ["room.1"], claims
    assert 3595 <= claims["exp"] - time.time() <= 3601, claims
    gw = procs.gateway("--jwt-secret-file", str(secret_file), node_id="t")
    c = await WsClient.connect(f"ws://127.0.0.1:{gw.port}/ws?token={tok}")
    await c.subscribe("room.5")
    await c.publish("room.1", "hi")
    await c.error({"op": "publish", "channel": "room.2", "data": 1}, "forbidden")
    await c.error({"op": "subscribe", "channel": "lobby"}, "forbidden")


def check(secret_file, tok):
    r = run_wsgate(["token", "--check", tok, "--secret-file", str(secret_file)])
    return r.returncode, r.stdout.decode()


def hs256(claims, secret=SECRET):
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    signing = enc(b'{"alg":"HS256","typ":"JWT"}') + "." + enc(json.dumps(claims).encode())
    return signing + "." + enc(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())


def test_token_check_explains(secret_file, tmp_path):
    rc, out = check(secret_file, mint(secret_file, "--sub", "ana", "--channels", "a,b.*"))
    assert rc == 0, out
    assert re.search(r"^claims: +\{.*\"sub\":\"ana\"", out, re.M), out
    assert re.search(r"^expires: +\S+Z \(in (3600|35\d\d) s\)$", out, re.M), out
    assert re.search(r"^channels: a b\.\*$", out, re.M), out
    assert re.search(r"^verdict: +accepted \(sub ana\)$", out, re.M), out

    rc, out = check(secret_file, hs256({"sub": "bob", "exp": int(time.time()) - 60}))
    assert rc == 1 and re.search(r"^verdict: +refused: expired: ", out, re.M), out
    assert re.search(r"^expires: +\S+Z \(\d+ s ago\)$", out, re.M), out

    other = tmp_path / "other.secret"
    other.write_text("another-secret")
    rc, out = check(other, mint(secret_file, "--sub", "ana"))
    assert rc == 1 and "refused: bad_signature" in out, out
    assert '"sub":"ana"' in out, "the claims are shown even when the signature fails"

    rc, out = check(secret_file, "not-a-token")
    assert rc == 1 and "refused: token_malformed" in out, out


def test_token_without_ttl_expiry(secret_file):
    rc, out = check(secret_file, mint(secret_file, "--ttl", "0"))
    assert rc == 0 and re.search(r"^expires: +never$", out, re.M), out


@pytest.mark.parametrize("args,name", [
    ([], "--secret-file"),
    (["--secret-file", "/nonexistent/s"], "--secret-file"),
    (["--secret-file", "SECRET", "--ttl", "soon"], "--ttl"),
    (["--secret-file", "SECRET", "--ttl", "-1h"], "--ttl"),
    (["--secret-file", "SECRET", "--channels", "a*b"], "--channels"),
    (["--secret-file", "SECRET", "--publish", "a,,b"], "--publish"),
    (["--secret-file", "SECRET", "--sub", "has space"], "sub"),
    (["--secret-file", "SECRET", "--bogus", "1"], "--bogus"),
    (["--secret-file", "SECRET", "--sub"], "--sub"),
    (["--secret-file", "SECRET", "--check", "x.y.z", "--sub", "a"], "--check"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_token_bad_input(secret_file, args, name):
    args = [str(secret_file) if a == "SECRET" else a for a in args]
    line = one_error_line(run_wsgate(["token", *args]), name)
    assert line.startswith("wsgate token: "), line


# ---- config file and config --check ----------------------------------------

@async_test(30)
async def test_config_file_and_precedence(procs, tmp_path):
    conf = tmp_path / "wsgate.conf"
    conf.write_text("# a gateway\nnode-id = from-file\nmax_channels = 1\n"
                    'channel-prefix = "app:"\n')
    gw = procs.gateway("--config", str(conf))
    c = await gw.subscriber("a")
    assert c.welcome["node"] == "from-file", c.welcome
    await c.error({"op": "subscribe", "channel": "b"}, "too_many_channels")

    # WSGATE_* beats the file, a flag beats both; WSGATE_CONFIG names the file
    gw2 = procs.gateway("--node-id", "from-flag",
                        env={"WSGATE_CONFIG": str(conf), "WSGATE_MAX_CHANNELS": "2"})
    c2 = await gw2.subscriber("a", "b")
    assert c2.welcome["node"] == "from-flag", c2.welcome
    await c2.error({"op": "subscribe", "channel": "c"}, "too_many_channels")


def test_config_check_prints_effective_settings_masked(tmp_path):
    conf = tmp_path / "wsgate.conf"
    conf.write_text("redis = redis://alice:redispw@127.0.0.1:6390/2\napi-key = apikey123\n"
                    "max-connections = 77\n")
    r = run_wsgate(["config", "--check", "--config", str(conf), "--jwt-secret", "jwtsecret99",
                    "--max-channels", "9"], env={"WSGATE_PUBLISH_RATE": "5"})
    out = r.stdout.decode()
    assert r.returncode == 0, (r, out)
    for secret in ("redispw", "apikey123", "jwtsecret99"):
        assert secret not in out + r.stderr.decode(), f"{secret} leaked:\n{out}"
    want = [r"^redis = redis://alice:\*\*\*\*@127\.0\.0\.1:6390/2  # config file line 1$",
            r"^api-key = \*\*\*\*  # config file line 2, 9 bytes$",
            r"^max-connections = 77  # config file line 3$",
            r"^max-channels = 9  # --max-channels$",
            r"^publish-rate = 5  # WSGATE_PUBLISH_RATE$",
            r"^jwt-secret = \*\*\*\*  # --jwt-secret, 11 bytes$",
            r"^# auth: required  \(derived from the JWT secret\)$",
            r"^listen = 0\.0\.0\.0:8080  # default$",
            r"^# node-id: hostname:port$",
            rf"^# config: {re.escape(str(conf))}  \(--config\)$",
            r"^# configuration OK$"]
    for w in want:
        assert re.search(w, out, re.M), f"{w!r} not in:\n{out}"
    assert "answers 403" not in out, "a key is set: the API is on"
    # the output is itself a config file (secrets aside): it loads to the same settings
    again = tmp_path / "again.conf"
    again.write_text("\n".join(l for l in out.splitlines() if "****" not in l) + "\n")
    r2 = run_wsgate(["config", "--check", "--config", str(again)])
    out2 = r2.stdout.decode()
    assert r2.returncode == 0, r2
    for line in ("max-channels = 9", "publish-rate = 5", "max-connections = 77"):
        assert re.search(rf"^{line}  # config file line \d+$", out2, re.M), out2
    r = run_wsgate(["config", "--check"])
    assert r.returncode == 0 and "# note: the HTTP API (/api/...) answers 403" in r.stdout.decode()


@pytest.mark.parametrize("args,name", [
    (["--config", "CONF:bogus = 1\n"], "unknown setting 'bogus'"),
    (["--config", "CONF:\nmax-queue-bytes = lots\n"], ":2: max-queue-bytes: invalid value"),
    (["--config", "CONF:listen\n"], "expected 'key = value'"),
    (["--config", "/nonexistent/wsgate.conf"], "--config: cannot read"),
    (["--web-root", "/nonexistent/web"], "--web-root"),
    (["--anonymous-channels", "lobby"], "--anonymous-channels"),
    (["--jwt-secret", "s", "--auth", "optional", "--anonymous-channels", "a*b"], "--anonymous-channels"),
    ([], "expected 'wsgate config --check"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_config_check_bad_input(tmp_path, args, name):
    conf = tmp_path / "bad.conf"
    full = []
    for a in args:
        if a.startswith("CONF:"):
            conf.write_text(a[5:])
            a = str(conf)
        full.append(a)
    cmd = ["config", "--check", *full] if args else ["config"]
    one_error_line(run_wsgate(cmd), name)
    if args:  # a start refuses the same settings the same way
        one_error_line(run_wsgate(["--listen", "127.0.0.1:0", *full]), name)


# ---- --help and the README --------------------------------------------------

def help_flags():
    out = run_wsgate(["--help"]).stdout.decode()
    blocks = re.split(r"^  (?=--)", out, flags=re.M)[1:]
    return {re.match(r"--([a-z-]+)", b).group(1): b for b in blocks}


def test_help_gives_one_default_per_flag():
    flags = help_flags()
    assert "sndbuf" in flags and "api-insecure" in flags and "config" in flags, flags.keys()
    for name, block in flags.items():
        if name in ("help", "version"):
            continue
        assert block.count("default") == 1, f"--{name}: {block!r}"
        assert re.search(r"default: \S", block), f"--{name} has an empty default: {block!r}"


def test_readme_lists_every_flag():
    readme = (REPO / "README.md").read_text()
    table = "\n".join(l for l in readme.splitlines() if l.startswith("| `--"))
    missing = [f for f in help_flags() if f not in ("help", "version") and f"`--{f}" not in table]
    assert not missing, f"README's flag table lacks {missing}"


def test_readme_lists_every_error_code():
    """Every snake_case code the gateway can send (WebSocket error frames,
    HTTP error bodies, refused upgrades, token verdicts) is in the README."""
    sources = ["core/client.c", "proto/v1.c", "proto/v1_codec.c", "net/http_api.c", "net/ws.c",
               "core/auth.c", "proto/sio_codec.c", "net/eio_poll.c"]
    text = "".join((REPO / "gateway" / s).read_text() for s in sources)
    codes = set(re.findall(r'"([a-z]+(?:_[a-z]+)+)"', text))
    # one-word codes, passed where a snake_case one would be
    codes |= set(re.findall(r'(?:client_reply\(c, id|send_json_error\(wsi, \d+|'
                            r'refuse\(app, wsi, \w+), "([a-z]+)"', text))
    codes |= set(re.findall(r'\*code = "([a-z]+)"', text))  # ws.c's upgrade verdicts
    assert {"forbidden", "internal", "draining", "bad_json"} <= codes, codes
    readme = (REPO / "README.md").read_text()
    missing = sorted(c for c in codes if f"`{c}`" not in readme)
    assert not missing, f"README does not document {missing}"


# ---- installed binary --------------------------------------------------------

@async_test(60)
async def test_install_prefix_serves_its_own_web_root(procs, tmp_path):
    build = Path(WSGATE_BIN).resolve().parent
    if not (build / "cmake_install.cmake").exists():
        pytest.skip(f"{build} is not a CMake build directory")
    prefix = tmp_path / "prefix"
    r = subprocess.run([shutil.which("cmake") or "cmake", "--install", str(build), "--prefix",
                        str(prefix)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    binary = prefix / "bin" / "wsgate"
    out = subprocess.run([str(binary), "config", "--check"], capture_output=True, text=True,
                         timeout=10).stdout
    assert f"web-root = {prefix}/share/wsgate/web  # default" in out, out
    gw = procs.spawn("wsgate:installed", [str(binary), "--listen", "127.0.0.1:0"])
    port = int(gw.wait_line(r"listening on [^ ]*:(\d+)").group(1))
    from wsgate_testing import http_request
    page = http_request(port, "GET", "/")
    assert page.status == 200 and page.body == (prefix / "share/wsgate/web/index.html").read_bytes()
