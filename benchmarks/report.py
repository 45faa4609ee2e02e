"""The report: machine description, targets, each section's table, a chart, and the raw JSON."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import inprocess
import login
import memory
import metrics_cost
import profiling
import server
from common import BENCH_DIR, RESULTS_DIR, Settings, Spread, redis_client

#: Each section's Markdown renderer, in report order.
RENDERERS: Dict[str, Callable[[Dict[str, Any]], List[str]]] = {
    "inprocess": inprocess.markdown,
    "login": login.markdown,
    "server": server.markdown,
    "memory": memory.markdown,
    "profile": profiling.markdown,
    "metrics": metrics_cost.markdown,
}
PACKAGES = (
    "flask-wxlogin", "Flask", "Werkzeug", "itsdangerous", "Flask-Caching", "cachelib", "redis",
    "requests", "urllib3", "Flask-Login", "Flask-JWT-Extended", "PyJWT", "gunicorn", "cryptography",
    "matplotlib", "prometheus-client", "limits",
)


def machine() -> Dict[str, str]:
    """What the figures were measured on."""
    return {
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical CPUs",
        "load average at start": load_average(),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Redis server": str(redis_client().info("server")["redis_version"]),
        "wrk": _first_line(["wrk", "--version"]),
        "flask-wxlogin commit": _first_line(["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"]),
        "flask_wxlogin/ tree": library_tree(),
        "packages": ", ".join(f"{name} {_version(name)}" for name in PACKAGES),
    }


def load_average() -> str:
    """1, 5 and 15-minute load averages: anything else running skews the figures."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _first_line(command: List[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return "not installed"
    return (done.stdout or done.stderr).splitlines()[0]


def library_tree() -> str:
    """The git tree of flask_wxlogin/ at HEAD, and whether the working tree differs from it."""
    repo = str(BENCH_DIR.parent)
    tree = _first_line(["git", "-C", repo, "rev-parse", "--short", "HEAD:flask_wxlogin"])
    changed = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "flask_wxlogin"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    return tree + (" with uncommitted changes" if changed else "")


# -- targets ----------------------------------------------------------------------------


def targets(results: Dict[str, Dict[str, Any]]) -> List[Tuple[str, str, bool]]:
    """(target, what was measured, met) for every target whose section ran."""
    rows: List[Tuple[str, str, bool]] = []
    if "inprocess" in results:
        rows += _inprocess_targets(results["inprocess"])
    if "server" in results:
        rows += _server_targets(results["server"])
    if "memory" in results:
        rows += _memory_targets(results["memory"])
    if "login" in results:
        rows += _login_targets(results["login"])
    if "metrics" in results:
        added = results["metrics"]["valid"]["added"]
        rows.append(("metrics add < 2 µs to a protected request", f"{added:.2f} µs", added < 2))
    return rows


def _inprocess_targets(result: Dict[str, Any]) -> List[Tuple[str, str, bool]]:
    embedded, near = result["x_bare_sk"]["ours_embedded"], result["x_bare_sk"]["ours_near"]
    over_floor = result["redis_minus_floor"]
    commands = result["commands"]
    return [
        ("embedded cache ≤ 1.2× bare + SECRET_KEY", f"{embedded.text(2)}×", embedded.median <= 1.2),
        ("Redis ≤ floor + 15 µs", f"floor + {over_floor.text()} µs", over_floor.median <= 15),
        ("near-cache hit ≤ 1.3× bare + SECRET_KEY", f"{near.text(2)}×", near.median <= 1.3),
        ("≤ 1 Redis command per protected request", f"{commands['valid_per_request']:.2f}",
         commands["valid_per_request"] <= 1),
        ("0 Redis commands for a forged skey", f"{commands['forged_per_request']:.2f}",
         commands["forged_per_request"] == 0),
    ]


def _server_targets(result: Dict[str, Any]) -> List[Tuple[str, str, bool]]:
    ours_floor, ours_bare, jwt_bare = result["x_floor"]["ours"], result["x_bare"]["ours"], result["x_bare"]["jwt"]
    near_floor = result["x_floor"]["near"]
    return [
        ("gunicorn: ours on Redis ≥ 0.95× the floor's req/s", f"{ours_floor.text(2)}×", ours_floor.median >= 0.95),
        ("gunicorn: near cache ≥ 1.4× the floor's req/s", f"{near_floor.text(2)}×", near_floor.median >= 1.4),
        ("gunicorn: ours ahead of JWT's ratio to bare",
         f"ours {ours_bare.text(2)}×, JWT {jwt_bare.text(2)}×", ours_bare.median > jwt_bare.median),
    ]


def _memory_targets(result: Dict[str, Any]) -> List[Tuple[str, str, bool]]:
    rows = []
    for name, limit in memory.TARGETS.items():
        per_user = result[name]["bytes_per_user"]
        rows.append((f"≤ {limit} B of Redis memory per user: {memory.CASES[name].label}", f"{per_user:.0f} B",
                     per_user <= limit))
    return rows


def _login_targets(result: Dict[str, Any]) -> List[Tuple[str, str, bool]]:
    own = max(result["own_embedded"].median, result["own_redis"].median)
    reuse = max(result["connections_per_login"].values())
    return [
        ("login: own time ≤ 1 ms beyond the stub's",
         f"embedded {result['own_embedded'].median:.0f} µs, Redis {result['own_redis'].median:.0f} µs", own <= 1000),
        ("login: pooled connection reused", f"{reuse:.2f} new connections per login", reuse == 0),
    ]


# -- output -------------------------------------------------------------------------------


def write(results: Dict[str, Dict[str, Any]], settings: Settings, described: Dict[str, str], seconds: float) -> Path:
    """Write ``results-<mode>.md``, ``.png`` and ``.json`` into ``results/``; the Markdown file's path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"results-{settings.name}"
    chart = stem.with_suffix(".png")
    draw(results, chart)
    text = markdown(results, settings, described, seconds, chart.name)
    stem.with_suffix(".md").write_text(text)
    payload = {"settings": dataclasses.asdict(settings), "machine": described, "seconds": seconds,
               "targets": targets(results), "results": results}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=_plain, ensure_ascii=False))
    return stem.with_suffix(".md")


def _plain(value: Any) -> Any:
    if isinstance(value, Spread):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _command(results: Dict[str, Dict[str, Any]], settings: Settings) -> str:
    """The command line of this run, as far as it changes the figures."""
    port = os.environ.get("WXLBENCH_REDIS_PORT")
    only = "" if set(results) >= set(RENDERERS) else " --only " + " ".join(results)
    return (f"{'WXLBENCH_REDIS_PORT=' + port + ' ' if port else ''}python benchmarks/run.py"
            f"{' --quick' if settings.name == 'quick' else ''}{only}")


def markdown(
    results: Dict[str, Dict[str, Any]], settings: Settings, described: Dict[str, str], seconds: float, chart: str
) -> str:
    lines = [
        f"# flask-wxlogin benchmarks ({settings.name} run)",
        "",
        f"`{_command(results, settings)}` took {seconds:.0f} s.",
        "",
        *[f"- **{key}**: {value}" for key, value in described.items()],
        "",
        "## Targets",
        "",
        "| target | measured: median (min–max) | met |",
        "|---|---|:---:|",
        *[f"| {target} | {measured} | {'yes' if met else '**no**'} |" for target, measured, met in targets(results)],
        "",
        f"![chart]({chart})",
        "",
    ]
    for name, render in RENDERERS.items():
        if name in results:
            lines += render(results[name])
    return "\n".join(lines)


def draw(results: Dict[str, Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(4, 1, figsize=(10, 17))
    panels = (
        ("inprocess", "In process: µs per request", lambda r: _bars(r["us"], inprocess.LABELS)),
        ("login", "Login: µs per call (HTTPS stub)", lambda r: _bars(r["us"], login.LABELS)),
        ("server", "gunicorn + wrk: requests per second", lambda r: _bars(r["rps"], server.LABELS)),
        ("memory", "Redis bytes per user", _memory_bars),
    )
    for axis, (name, title, bars) in zip(axes.flat, panels):
        axis.set_title(title)
        if name not in results:
            axis.text(0.5, 0.5, "not run", ha="center", va="center", transform=axis.transAxes)
            axis.set_axis_off()
            continue
        labels, values, errors = bars(results[name])
        axis.barh(labels, values, xerr=errors, color="#4c72b0", ecolor="#333333", capsize=3)
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
        if name == "memory":
            for limit in sorted(set(memory.TARGETS.values())):
                axis.axvline(limit, color="#c44e52", linestyle="--")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _bars(spreads: Dict[str, Any], labels: Dict[str, str]) -> Tuple[List[str], List[float], Optional[List[List[float]]]]:
    names = list(labels)
    values = [spreads[name].median for name in names]
    errors = [[spreads[name].median - spreads[name].low for name in names],
              [spreads[name].high - spreads[name].median for name in names]]
    return [_wrap(labels[name]) for name in names], values, errors


def _memory_bars(result: Dict[str, Any]) -> Tuple[List[str], List[float], None]:
    names = [*memory.CASES, "pickled"]
    labels = [_wrap(memory.CASES[name].label if name in memory.CASES else "pickled dict (reference)") for name in names]
    return labels, [result[name]["bytes_per_user"] for name in names], None


def _wrap(label: str) -> str:
    return textwrap.fill(label, 38)
