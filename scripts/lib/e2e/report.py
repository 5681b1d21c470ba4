"""Time-stamped log lines and the verdict table (check, expected, observed, ok)."""

from playlib import progress

log = progress("e2e", 6)


RESULTS = []  # (check, expected, observed, ok)


def verdict(check, expected, observed, ok):
    RESULTS.append((check, str(expected), str(observed), bool(ok)))
    log(f"{'ok  ' if ok else 'FAIL'} {check}: expected {expected}; observed {observed}")
    return ok


def print_table(title):
    rows = [("check", "expected", "observed", "ok")] + [
        (c, e, o, "ok" if k else "FAIL") for c, e, o, k in RESULTS]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(3)]
    print()
    print(title)
    for i, r in enumerate(rows):
        print("  " + "  ".join(r[j].ljust(widths[j]) for j in range(3)) + "  " + r[3])
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths) + "  ----")


def short(pod):
    """tcp-1 for <run id>-tcp-1."""
    return "-".join(pod.split("-")[-2:])


def fmt(v):
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
