"""Trusted evaluator for examples/ci-time: the CI pipeline's wall time, with nothing left out.

Runs the candidate's `examples/ci-time/pipeline.py` through the harness (as the
candidate, in its tree) and times it here, from just before the call to its
return: `pipeline_s`, the metric. Nothing the pipeline prints is read, and a time
it reports means nothing.

What it trusts, and why. Anything that runs as the candidate's user could write
any record it likes: a junit file, a coverage file, an "OK" line, a patched test
runner. So no step whose result counts runs there. The pipeline only asks; the
CI runner (`runner.py`, this process, on loopback) runs every lint, build and test
job itself, each in a fresh trusted process (`job.py`, `python3 -I`), on the
pristine project (an evaluator path: mounted read-only from the run's snapshot, in
the candidate's tree too), and keeps the record in its own memory. The candidate
chooses which jobs to ask for, in which order, how many at once, and which build
to reuse; it cannot choose what a job does or what the record says. The trusted
test list is what this side's own discovery finds in the pristine tests; coverage
is measured in the test jobs (sys.settrace over the package's files) against the
executable lines of the pristine sources. Only jobs that finished before the
pipeline returned count: work left running in the background after it does not.

Prints `pipeline_s` and, for the contract's constraints: `tests_missing` (tests of
the trusted list no job ran), `tests_failed` (ran, but failed, errored or were
skipped at least once), `lint_missing` (project files no clean lint job covered)
and `coverage` (percent of the package's lines the counted test jobs ran). A
pipeline that exits non-zero or times out is a crash.
"""

import sys
import time
from pathlib import Path

import autoresearch_harness as harness
from runner import Runner

ROOT = Path.cwd()  # the trusted tree (the evaluator runs at the repository's root)
PROJECT = ROOT / "examples/ci-time/project"
PIPELINE = "examples/ci-time/pipeline.py"
TIMEOUT_S = 50

runner = Runner(PROJECT)
with runner.serving() as url:
    started = time.perf_counter()
    done = harness.run(["python3", PIPELINE], env={"CI_RUNNER_URL": url}, timeout=TIMEOUT_S)
    ended = time.perf_counter()
records = runner.finished_by(ended)

if done["timed_out"] or done["returncode"] != 0:
    why = "timed out" if done["timed_out"] else f"exited {done['returncode']}"
    last = done["stderr"].strip().splitlines()[-1:] or [""]
    print(f"the pipeline {why}; its last stderr line (candidate text): {last[0][-300:]}")
    sys.exit(1)

trusted = {f"{m}.{n}" for m, names in runner.tests.items() for n in names}
ran: dict[str, set[str]] = {}
hits: dict[str, set[int]] = {}
for r in records:
    if r.kind != "test":
        continue
    outcomes = r.result.get("outcomes", {})
    for test in r.asked:  # a test of a crashed job ran and did not pass
        ran.setdefault(test, set()).add(outcomes.get(test, "crashed"))
    for rel, lines in r.result.get("lines", {}).items():
        hits.setdefault(rel, set()).update(lines)
linted = {f for r in records if r.kind == "lint" and r.ok for f in r.asked}
executable = {rel: set(lines) for rel, lines in runner.lines.items()}
covered = sum(len(lines & hits.get(rel, set())) for rel, lines in executable.items())
total = sum(len(lines) for lines in executable.values())

for r in records:  # the runner's own record, for the log
    what = {"lint": f"{len(r.asked)} files", "build": r.asked[0]}.get(r.kind)
    what = what or f"{r.asked[0].split('.')[0]} ({len(r.asked)} tests)"
    print(f"job {r.kind} {what}: {'ok' if r.ok else 'FAILED'}")
print(f"pipeline_s: {ended - started:.4f}")
print(f"jobs: {len(records)}")
print(f"builds: {sum(r.kind == 'build' for r in records)}")
print(f"tests_total: {len(trusted)}")
print(f"tests_missing: {len(trusted - set(ran))}")
print(f"tests_failed: {sum(outcomes != {'passed'} for outcomes in ran.values())}")
print(f"lint_missing: {len(set(runner.files) - linted)}")
print(f"coverage: {100 * covered / max(total, 1):.3f}")
