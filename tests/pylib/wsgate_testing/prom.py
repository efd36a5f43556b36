"""Owns the strict Prometheus text-format (0.0.4) parser and /metrics scraping."""

import asyncio
import re
import time

from .httpc import http_request


_PROM_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_PROM_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_PROM_FLOAT = re.compile(r"^[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$")


def _prom_float(s, where):
    if not _PROM_FLOAT.match(s):
        raise AssertionError(f"bad sample value {s!r} in {where!r}")
    return float(s)


def _prom_labels(s, where):
    """Parses the inside of {...}: name="value",... with \\\\, \\" and \\n escapes."""
    labels = {}
    i = 0
    rx_name = re.compile(_PROM_LABEL)
    while i < len(s):
        m = rx_name.match(s, i)
        if not m:
            raise AssertionError(f"bad label name at {s[i:]!r} in {where!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise AssertionError(f"expected =\" after label {name!r} in {where!r}")
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise AssertionError(f"unterminated label value in {where!r}")
            ch = s[i]
            if ch == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise AssertionError(f"bad escape \\{nxt} in label value in {where!r}")
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif ch == '"':
                i += 1
                break
            elif ch == "\n":
                raise AssertionError(f"raw newline in label value in {where!r}")
            else:
                val.append(ch)
                i += 1
        if name in labels:
            raise AssertionError(f"label {name!r} twice in {where!r}")
        labels[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                raise AssertionError(f"expected ',' between labels in {where!r}")
            i += 1
    return labels


class PromMetrics:
    """Result of parse_prometheus(): families {name: {"type", "help",
    "samples": [(sample_name, labels, value)]}} and a sample lookup."""

    def __init__(self, families, samples):
        self.families = families
        self.samples = samples       # {(sample_name, frozenset(labels.items())): value}

    def value(self, name, **labels):
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            have = sorted(f"{n}{dict(l)}" for n, l in self.samples if n == name)
            raise AssertionError(f"no sample {name}{labels or ''} in /metrics (samples of that name: {have})")
        return self.samples[key]

    def type_of(self, name):
        return self.families[name]["type"]


def parse_prometheus(text):
    """Strict parser of the Prometheus text exposition format 0.0.4. Raises
    AssertionError on anything malformed: syntax, a sample whose metric has
    no TYPE line (declared before its first sample), HELP/TYPE twice, a
    family's samples not contiguous, duplicate samples, counters < 0, and
    histograms whose buckets are not cumulative, do not end in le="+Inf" or
    whose +Inf bucket differs from _count (or lack _sum/_count)."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    families = {}
    samples = {}
    finished = set()          # families whose sample block is over
    current = None            # family of the previous sample
    rx_sample = re.compile(rf"^({_PROM_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$")

    def family_of(sample_name):
        if sample_name in families and families[sample_name]["type"] not in ("histogram", "summary"):
            return sample_name
        for suffix in ("_bucket", "_sum", "_count"):
            if sample_name.endswith(suffix):
                base = sample_name[:-len(suffix)]
                if base in families and families[base]["type"] == "histogram":
                    return base
                if base in families and families[base]["type"] == "summary" and suffix != "_bucket":
                    return base
        if sample_name in families and families[sample_name]["type"] == "summary":
            return sample_name
        return None

    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {lineno}: {line}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not re.fullmatch(_PROM_NAME, parts[2]):
                    raise AssertionError(f"bad {parts[1]} line ({where})")
                name = parts[2]
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if fam["samples"]:
                    raise AssertionError(f"{parts[1]} for {name} after its samples ({where})")
                if parts[1] == "HELP":
                    if fam["help"] is not None:
                        raise AssertionError(f"second HELP for {name} ({where})")
                    fam["help"] = parts[3] if len(parts) > 3 else ""
                else:
                    if fam["type"] is not None:
                        raise AssertionError(f"second TYPE for {name} ({where})")
                    if len(parts) != 4 or parts[3] not in _PROM_TYPES:
                        raise AssertionError(f"bad TYPE line ({where})")
                    fam["type"] = parts[3]
            continue     # other comments are allowed
        m = rx_sample.match(line)
        if not m:
            raise AssertionError(f"malformed sample ({where})")
        sname, lbl, val = m.group(1), m.group(2), m.group(3)
        labels = _prom_labels(lbl, where) if lbl else {}
        value = _prom_float(val, where)
        fname = family_of(sname)
        if fname is None or families[fname]["type"] is None:
            raise AssertionError(f"sample {sname} has no TYPE line declaring its metric ({where})")
        if fname != current:
            if fname in finished:
                raise AssertionError(f"samples of {fname} are not contiguous ({where})")
            if current is not None:
                finished.add(current)
            current = fname
        key = (sname, frozenset(labels.items()))
        if key in samples:
            raise AssertionError(f"duplicate sample ({where})")
        samples[key] = value
        families[fname]["samples"].append((sname, labels, value))
        if families[fname]["type"] == "counter" and not value >= 0:
            raise AssertionError(f"counter below 0 ({where})")

    for fname, fam in families.items():
        if fam["type"] != "histogram":
            continue
        series = {}
        for sname, labels, value in fam["samples"]:
            rest = frozenset((k, v) for k, v in labels.items() if k != "le")
            s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if sname == fname + "_bucket":
                if "le" not in labels:
                    raise AssertionError(f"{fname}_bucket without le label")
                s["buckets"].append((_prom_float(labels["le"], f"le of {fname}"), labels["le"], value))
            elif sname == fname + "_sum":
                s["sum"] = value
            elif sname == fname + "_count":
                s["count"] = value
        if not series:
            raise AssertionError(f"histogram {fname} has no samples")
        for rest, s in series.items():
            b = s["buckets"]
            if not b:
                raise AssertionError(f"histogram {fname}{dict(rest)} has no buckets")
            les = [x[0] for x in b]
            if les != sorted(les) or len(set(les)) != len(les):
                raise AssertionError(f"histogram {fname} buckets not in increasing le order: {les}")
            if b[-1][1] != "+Inf":
                raise AssertionError(f"histogram {fname} does not end with le=\"+Inf\": {b[-1]}")
            vals = [x[2] for x in b]
            if any(v2 < v1 for v1, v2 in zip(vals, vals[1:])):
                raise AssertionError(f"histogram {fname} buckets not cumulative: {vals}")
            if s["count"] is None or s["sum"] is None:
                raise AssertionError(f"histogram {fname} lacks _count or _sum")
            if vals[-1] != s["count"]:
                raise AssertionError(f"histogram {fname}: +Inf bucket {vals[-1]} != _count {s['count']}")
    return PromMetrics(families, samples)


def scrape_metrics(port, timeout=5.0):
    """GET /metrics and parse it strictly."""
    r = http_request(port, "GET", "/metrics", timeout=timeout)
    assert r.status == 200, f"/metrics: {r!r}"
    return parse_prometheus(r.body.decode("utf-8"))


async def ascrape_metrics(gw, timeout=5.0):
    return await asyncio.to_thread(scrape_metrics, gw.port, timeout)


async def await_metrics(gw, pred, timeout=5.0, what="a /metrics condition", interval=0.05):
    """Scrapes /metrics until pred(metrics) is true; returns those metrics.
    For state the gateway reaches asynchronously (a close it has to notice)."""
    deadline = time.monotonic() + timeout
    while True:
        m = await ascrape_metrics(gw)
        if pred(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
