"""Trusted: the prompt template scored on a fixed evaluation set, through the contract's LLM service.

The template (the implementation) is read as data with `harness.source`, never
imported or run. Each of the 60 items is rendered into it and sent to the
Messages API at the service's loopback URL; the host's gateway adds the key and
counts the tokens (`gateway.llm.tokens`, a trusted figure the contract
constrains). The reply's last line must be the expected number exactly.
Offline the service is a deterministic fake (examples/prompt-optimization/
fake_llm.py); with a key, Claude, unchanged.
"""

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import autoresearch_harness as harness

MODEL = "claude-haiku-4-5"
TEMPLATE = "examples/prompt-optimization/prompt.txt"
ITEMS = "evaluators/prompt-optimization/items.json"


def ask(url, prompt):
    """The model's text for `prompt`, or None when the service refused or failed."""
    body = json.dumps(
        {"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    request = urllib.request.Request(
        f"{url}/v1/messages",
        data=body,
        headers={
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
            "x-api-key": "added-by-the-gateway",  # dropped there; the real key never comes in
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            data = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return "".join(c.get("text", "") for c in data.get("content", []) if c.get("type") == "text")


def main():
    template = harness.source(TEMPLATE)  # candidate text: data, stays quoted if printed
    if "{question}" not in template:
        print("the template has no {question} placeholder")
        return 1
    with open(ITEMS) as f:
        items = json.load(f)
    url = harness.service("llm")
    prompts = [template.replace("{question}", item["question"]) for item in items]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda p: ask(url, p), prompts))
    right = failed = 0
    for item, text in zip(items, replies, strict=True):
        if text is None:
            failed += 1
            continue
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        right += bool(lines) and lines[-1] == item["answer"]
    print(f"accuracy: {right / len(items):.6f}")
    print(f"llm_failed: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
