"""Run a paper's claim as arms x seeds and write its table: `python -m experiments.claims`.

Each claim of `experiments/claims.yaml` names the command-line overrides every arm shares and
those of each arm. `run` trains every arm with every seed by `run_experiment.py`, one job at a
time (seed-major, so a stopped run leaves balanced arms), and records what each job measured
in `<runs>/<claim>/<arm>/seed<seed>/result.json`. Started again, `run` skips the jobs recorded
with the overrides the spec gives now and stops at one recorded with others. `table` reads the
records back and prints the claim's Markdown table (mean and sample standard deviation over
seeds, then every seed) and writes them, with parameters and MACs per arm from
`run_profiler.py`, to `experiments/<family>/claim_results.json`.

    python -m experiments.claims list
    FARCONV_DATA=<folder holding MNIST/> python -m experiments.claims run checkered --seeds 0 1 2 --threads 1
    FARCONV_DATA=<folder holding MNIST/> python -m experiments.claims table checkered

The checkpoint tested is the one the run selected on its validation split; the test set is
used once per job.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import yaml

from benchmarks.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "experiments" / "claims.yaml"
DEFAULT_RUNS = REPO / "runs" / "claims"
# Overrides of every job: plain CSV metrics (read back below), no progress bars in the log.
JOB_OVERRIDES = ["logger=csv", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@dataclass(frozen=True)
class Claim:
    """One paper claim: `arms` maps an arm's label to its overrides, after `common`."""

    name: str
    family: str
    statement: str
    common: list[str]
    arms: dict[str, list[str]]

    def overrides(self, arm: str, seed: int, extra: Sequence[str] = ()) -> list[str]:
        return [*self.common, *self.arms[arm], *extra, f"seed={seed}"]


def load_claims(path: Path = SPEC) -> dict[str, Claim]:
    """The claims of `path`, by name; raises ValueError naming a claim that lacks a key."""
    raw = yaml.safe_load(path.read_text())
    claims = {}
    for name, entry in raw.items():
        missing = {"family", "statement", "common", "arms"} - set(entry)
        if missing:
            raise ValueError(f"{path.name}: claim {name!r} lacks {sorted(missing)}")
        arms = {label: list(overrides or []) for label, overrides in entry["arms"].items()}
        if len(arms) < 2:
            raise ValueError(f"{path.name}: claim {name!r} has {len(arms)} arm(s); a claim compares at least 2")
        claims[name] = Claim(name, entry["family"], " ".join(entry["statement"].split()), list(entry["common"]), arms)
    return claims


def _checkpoint_rank(row: dict[str, str]) -> tuple[float, float, int]:
    """Larger is kept: validation accuracy, then lower validation loss, then the earlier step."""
    loss = float(row["val/loss"]) if row.get("val/loss") else math.inf
    return float(row["val/acc"]), -loss, -int(float(row["step"]))


def metrics_of(run_folder: Path) -> dict[str, float]:
    """Test accuracy, and the validation accuracy and step of the checkpoint that was tested,
    from the CSV metrics of the one run under `run_folder`.

    The tested checkpoint is the one the default checkpoint callback keeps: the best `val/acc`,
    among equal ones the lowest `val/loss`, among equal both the earliest.
    """
    files = list(run_folder.rglob("metrics.csv"))
    if len(files) != 1:
        raise FileNotFoundError(f"{run_folder} holds {len(files)} metrics.csv files, not 1 (logger=csv, one run per folder)")
    with files[0].open() as handle:
        rows = list(csv.DictReader(handle))
    tests = [float(row["test/acc"]) for row in rows if row.get("test/acc")]
    if not tests:
        raise ValueError(f"{files[0]} has no test/acc: the run did not reach its test")
    best = max((row for row in rows if row.get("val/acc")), key=_checkpoint_rank, default=None)
    return {
        "test_acc": 100 * tests[-1],
        "best_val_acc": 100 * float(best["val/acc"]) if best else math.nan,
        "best_val_step": int(float(best["step"])) if best else -1,
        "last_step": max(int(float(row["step"])) for row in rows),
    }


def job_overrides(claim: Claim, arm: str, seed: int, folder: Path, extra: Sequence[str] = ()) -> list[str]:
    """The command line of one job (after `run_experiment.py`), its run folder under `folder`."""
    return [*claim.overrides(arm, seed, extra), *JOB_OVERRIDES, f"paths.runs={folder}"]


def run_job(claim: Claim, arm: str, seed: int, runs: Path, threads: int, extra: Sequence[str] = ()) -> dict:
    """Train one arm with one seed and return its record; a job recorded with the same
    overrides is not trained again, one recorded with others is an error (the spec changed:
    remove its folder to retrain it)."""
    folder = runs / claim.name / arm / f"seed{seed}"
    record_file = folder / "result.json"
    overrides = claim.overrides(arm, seed, extra)
    if record_file.exists():
        record = json.loads(record_file.read_text())
        if record["overrides"] != overrides:
            raise ValueError(f"{record_file} was trained with {record['overrides']}, the spec now says {overrides}; "
                             f"remove {folder} to train it again")  # fmt: skip
        return record
    shutil.rmtree(folder, ignore_errors=True)  # what a failed or stopped attempt left
    folder.mkdir(parents=True)
    command = [sys.executable, "run_experiment.py", *job_overrides(claim, arm, seed, folder, extra)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load_before = os.getloadavg()
    start = time.time()
    with (folder / "console.txt").open("w") as console:
        returncode = subprocess.run(command, cwd=REPO, env=env, stdout=console, stderr=subprocess.STDOUT).returncode
    wall = time.time() - start
    if returncode != 0:
        raise RuntimeError(f"{claim.name}/{arm} seed {seed} failed (exit {returncode}); see {folder / 'console.txt'}")
    record = {
        "claim": claim.name, "arm": arm, "seed": seed, "overrides": overrides,
        **metrics_of(folder), "wall_s": round(wall, 1), "threads": threads,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": describe_machine(torch.device("cpu"))["summary"],
    }
    record_file.write_text(json.dumps(record, indent=1))
    return record


def profile_arm(claim: Claim, arm: str, extra: Sequence[str] = ()) -> dict:
    """Parameters and MACs per sample of an arm's net (`run_profiler.py profile.repeats=0`)."""
    command = [sys.executable, "run_profiler.py", *claim.overrides(arm, 0, extra), "profile.repeats=0"]
    output = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    cost = json.loads(output.strip().splitlines()[-1])
    return {"params": cost["params"], "macs": cost["macs"], "conv_families": cost["conv_families"]}


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(claim: Claim, records: list[dict], costs: dict[str, dict]) -> str:
    """The claim's Markdown table: one row per arm, mean ± std, then the seeds."""
    lines = [
        f"Claim: {claim.statement}",
        "",
        "| arm | parameters | MACs / sample | test accuracy (%) | best validation (%) | seeds | wall time per job (s) |",
        "|---|---:|---:|---|---|---|---:|",
    ]
    for arm in claim.arms:
        mine = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"])
        if not mine:
            continue
        cost = costs[arm]
        seeds = ", ".join(f"{r['seed']}: {r['test_acc']:.2f}" for r in mine)
        walls = [r["wall_s"] for r in mine]
        lines.append(
            f"| {arm} | {cost['params']:,} | {cost['macs'] / 1e6:.2f}M | {summary([r['test_acc'] for r in mine])} | "
            f"{summary([r['best_val_acc'] for r in mine])} | {seeds} | {min(walls):.0f}-{max(walls):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["list", "run", "table"])
    parser.add_argument("claims", nargs="*", help="claim names (default: every claim)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="folder of the jobs' run folders and records")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each job")
    parser.add_argument("--set", dest="extra", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides added to every job, e.g. dataset.num_workers=0 (recorded with each job)")
    args = parser.parse_args(argv)
    claims = load_claims()
    unknown = [name for name in args.claims if name not in claims]
    if unknown:
        parser.error(f"unknown claim(s) {unknown}; choose from {sorted(claims)}")
    chosen = [claims[name] for name in (args.claims or claims)]
    if args.action == "list":
        for claim in chosen:
            print(f"{claim.name} ({claim.family}): {claim.statement}  arms: {', '.join(claim.arms)}")
        return 0
    if args.action == "run":
        for claim in chosen:
            for seed in args.seeds:
                for arm in claim.arms:
                    record = run_job(claim, arm, seed, args.runs, args.threads, args.extra)
                    print(f"{claim.name}/{arm} seed {seed}: test {record['test_acc']:.2f}% in {record['wall_s']:.0f} s", flush=True)
        return 0
    for claim in chosen:
        records = [json.loads(path.read_text()) for path in sorted((args.runs / claim.name).glob("*/seed*/result.json"))]
        stale = [r for r in records if r["arm"] not in claim.arms or r["overrides"] != claim.overrides(r["arm"], r["seed"], args.extra)]
        for record in stale:
            print(f"left out {record['arm']} seed {record['seed']}: trained with {record['overrides']}, not as the spec says now")
        records = [r for r in records if r not in stale and r["seed"] in args.seeds]
        costs = {arm: profile_arm(claim, arm, args.extra) for arm in claim.arms}
        out = REPO / "experiments" / claim.family / "claim_results.json"
        out.write_text(json.dumps({
            "claim": claim.name, "statement": claim.statement, "common": claim.common, "arms": claim.arms,
            "costs": costs, "jobs": records, "machine": describe_machine(torch.device("cpu"))["summary"],
        }, indent=1) + "\n")
        print(table(claim, records, costs))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
