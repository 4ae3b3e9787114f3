"""`experiments/claims.py`: every claim of `experiments/claims.yaml` composes, bad specs fail
in one line, and two arms x two seeds train, are skipped when re-run, and make the table."""

from __future__ import annotations

import json

import pytest

from engine.cli import check_command_line
from experiments.claims import Claim, job_overrides, load_claims, metrics_of, run_job, table

CLAIMS = load_claims()


def test_every_family_has_a_claim():
    assert {claim.family for claim in CLAIMS.values()} == {"box", "dcls", "checkered", "octave", "flexconv"}


@pytest.mark.parametrize("name, arm", [(name, arm) for name, claim in CLAIMS.items() for arm in claim.arms])
def test_every_arm_composes(name, arm, tmp_path):
    assert check_command_line(job_overrides(CLAIMS[name], arm, 0, tmp_path), multirun=False) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("c: {family: box, statement: s, common: [], arms: {only: []}}", "claim 'c' has 1 arm"),
        ("c: {family: box, common: [], arms: {a: [], b: []}}", r"claim 'c' lacks \['statement'\]"),
    ],
)
def test_bad_specs_fail_naming_the_claim(tmp_path, text, message):
    spec = tmp_path / "claims.yaml"
    spec.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_claims(spec)


def test_metrics_are_the_last_test_and_the_best_validation(tmp_path):
    folder = tmp_path / "run" / "csv" / "version_0"
    folder.mkdir(parents=True)
    metrics = folder / "metrics.csv"
    # the checkpoint kept: best val/acc, then lowest val/loss, then the earliest
    metrics.write_text("epoch,step,test/acc,val/acc,val/loss\n0,9,,0.5,1\n1,19,,0.75,0.4\n2,29,,0.75,0.3\n3,39,,0.75,0.3\n3,39,0.8,,\n")
    assert metrics_of(tmp_path) == {"test_acc": 80.0, "best_val_acc": 75.0, "best_val_step": 29, "last_step": 39}
    metrics.write_text("epoch,step,test/acc,val/acc,val/loss\n0,9,,0.5,1\n")
    with pytest.raises(ValueError, match="has no test/acc"):
        metrics_of(tmp_path)
    (tmp_path / "second_run" / "csv").mkdir(parents=True)
    (tmp_path / "second_run" / "csv" / "metrics.csv").write_text("")
    with pytest.raises(FileNotFoundError, match="holds 2 metrics.csv files, not 1"):
        metrics_of(tmp_path)


def test_two_arms_train_are_skipped_when_recorded_and_make_the_table(tmp_path):
    claim = Claim(
        "tiny", "box", "A 3x3 net and a 5x5 net on digits.",
        ["dataset=digits", "net.widths=[4,8]", "train.epochs=1", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "dataset.num_workers=0"],
        {"k3": [], "k5": ["net.kernel_size=5"]},
    )  # fmt: skip
    records = [run_job(claim, arm, 0, tmp_path, threads=1) for arm in claim.arms]
    assert [r["arm"] for r in records] == ["k3", "k5"]
    assert all(0 <= r["test_acc"] <= 100 and r["wall_s"] > 0 for r in records)
    saved = json.loads((tmp_path / "tiny" / "k5" / "seed0" / "result.json").read_text())
    assert saved == records[-1] and "net.kernel_size=5" in saved["overrides"]
    assert run_job(claim, "k5", 0, tmp_path, threads=1) == saved  # recorded: not trained again
    changed = Claim(claim.name, claim.family, claim.statement, claim.common, {"k5": ["net.kernel_size=7"]})
    with pytest.raises(ValueError, match=r"was trained with .*net.kernel_size=5.*the spec now says .*net.kernel_size=7"):
        run_job(changed, "k5", 0, tmp_path, threads=1)
    records += [record | {"seed": 1, "test_acc": record["test_acc"] / 2} for record in records]  # a second seed, made up
    costs = {"k3": {"params": 1234, "macs": 2.5e6}, "k5": {"params": 2345, "macs": 5e6}}
    rows = table(claim, records, costs).splitlines()
    assert rows[0] == "Claim: A 3x3 net and a 5x5 net on digits."
    k3 = next(row for row in rows if row.startswith("| k3 |"))
    assert "| 1,234 | 2.50M |" in k3 and " ± " in k3 and f"0: {records[0]['test_acc']:.2f}" in k3
