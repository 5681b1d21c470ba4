"""Reporting shared by every check: failures are printed as they are found
and counted; passes are counted per section for the summary."""

import yaml


FAILS = []
COUNTS = {}


def read_text(path):
    with open(path) as f:
        return f.read()


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def fail(where, what):
    FAILS.append(f"{where}: {what}")
    print(f"FAIL {where}: {what}")


def ok(section):
    COUNTS[section] = COUNTS.get(section, 0) + 1


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]
