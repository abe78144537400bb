"""The CI pipeline of examples/ci-time/project (the `shelf` package): lint, build, test.

Each step is a job of the CI runner at $CI_RUNNER_URL, which runs it and keeps
the result (see evaluators/ci-time/runner.py for its API):

    GET  /tests                              the test modules and the names of their tests
    POST /lint  {"files": [...]}             lint the project's files (default: all)
    POST /build {}                           a fresh build of the package: {"artifact": id}
    POST /test  {"artifact": id, "module": m, "tests": [names]}   run tests on a build

A job's answer holds `ok`; the pipeline stops at the first job that is not.
"""

import json
import os
import sys
import urllib.request

RUNNER = os.environ["CI_RUNNER_URL"]


def job(path, **body):
    request = urllib.request.Request(
        RUNNER + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    print(f"{path} {body}: {'ok' if answer['ok'] else 'FAILED'} in {answer['seconds']:.2f} s")
    if not answer["ok"]:
        sys.exit(f"{path} failed: {answer}")
    return answer


def main():
    with urllib.request.urlopen(RUNNER + "/tests", timeout=60) as response:
        modules = sorted(json.load(response)["tests"])
    job("/lint")
    for module in modules:
        build = job("/build")  # every test job starts from a clean build, as on a fresh runner
        job("/test", artifact=build["artifact"], module=module)


if __name__ == "__main__":
    main()
