"""The e2e script tests' way of reporting: `ok`/`fail` print one line per check, and FAILURES
collects the failed ones, which the script turns into its exit status at the end.

  from check_report import FAILURES, check, fail, ok, summary
  ...
  return summary("all checks passed")   # the exit status: 0, or 1 listing the failures
"""

FAILURES = []


def ok(what):
    print(f"ok: {what}")


def fail(what):
    print(f"FAIL: {what}")
    FAILURES.append(what)


def check(cond, what):
    (ok if cond else fail)(what)
    return cond


def summary(all_passed):
    """Prints the failed checks (first line of each) and returns 1, or `all_passed` and 0."""
    print()
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed:")
        for f in FAILURES:
            print(f"  - {f.splitlines()[0]}")
        return 1
    print(all_passed)
    return 0
